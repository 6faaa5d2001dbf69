"""`vaetraj decode` and `vaetraj sample`: structures out of the decoder."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from vaetraj.cli._options import (
    DebugOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
    RefineOption,
    Relax,
    RelaxOption,
)
from vaetraj.cli._runtime import finish_report, run_command


class Prior(str, Enum):
    density = "density"
    standard = "standard"


def decode_command(
    latent: Path | None = typer.Argument(
        None,
        metavar="[LATENT]",
        help="Latent points: an encode output (.h5/.npz/.csv), a .npy, or a CSV of numbers.",
    ),
    z: list[str] | None = typer.Option(
        None, "--z", help="A latent point such as 0.1,-0.3 (repeat for more)."
    ),
    model: Path = ModelOption,
    output: Path = typer.Option(
        Path("decoded.npz"),
        "-o",
        "--output",
        help="Structures: .npz, .h5 or any mdtraj format (.pdb, .dcd, .xtc, ...).",
    ),
    key: str | None = typer.Option(None, "--key", help="Array name in an .npz."),
    refine: bool = RefineOption,
    relax: Relax = RelaxOption,
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Decode latent points into structures (the decoder's mean).

    Examples:

      vaetraj decode latent.h5 -o path.pdb

      vaetraj decode --z 0.1,-0.3,0,0 --z 1,2,0,0 -o two.npz
    """

    def body():
        from vaetraj.pipeline.generate import decode_file, parse_points

        points = parse_points(z) if z else None
        report = decode_file(
            latent, model, output, points=points, key=key, refine=refine, overwrite=overwrite,
            relax=relax.value,
        )  # fmt: skip
        return finish_report(report, json_output=json_output, title=f"vaetraj {report.command}")

    run_command(body, json_output=json_output, debug=debug)


def sample_command(
    n: int = typer.Option(1000, "-n", "--n", help="Number of conformations."),
    model: Path = ModelOption,
    output: Path = typer.Option(
        Path("samples.npz"),
        "-o",
        "--output",
        help="Structures: .npz, .h5 or any mdtraj format (.pdb, .dcd, .xtc, ...).",
    ),
    prior: Prior = typer.Option(
        Prior.density,
        "--prior",
        help="density: the mixture fitted to the encoded training frames; standard: N(0, I).",
    ),
    temperature: float = typer.Option(
        1.0, "--temperature", help="Multiplies every latent std (below 1: nearer the modes)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Random seed; the same seed gives the same samples."
    ),
    refine: bool = RefineOption,
    relax: Relax = RelaxOption,
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Sample new conformations from the model, checked against the training data.

    Examples:

      vaetraj sample -n 1000                       # model.h5 -> samples.npz

      vaetraj sample -n 200 -o samples.pdb --temperature 0.8 --seed 1
    """

    def body():
        from vaetraj.pipeline.generate import sample_file

        report = sample_file(
            model,
            output,
            n,
            seed=seed,
            prior=prior.value,
            temperature=temperature,
            refine=refine,
            overwrite=overwrite,
            relax=relax.value,
        )
        return finish_report(report, json_output=json_output, title=f"vaetraj {report.command}")

    run_command(body, json_output=json_output, debug=debug)
