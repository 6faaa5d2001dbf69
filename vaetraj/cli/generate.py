"""`vaetraj decode` and `vaetraj sample`: structures out of the decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vaetraj.cli._options import (
    OUTPUT_OPTIONS,
    ModelOption,
    config_from,
    config_options,
    with_options,
)
from vaetraj.cli._runtime import finish_report, run_command
from vaetraj.configs import SampleConfig


@with_options(config_options(SampleConfig, skip=("n", "prior", "temperature", "seed")),
              OUTPUT_OPTIONS)  # fmt: skip
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
    **o: Any,
) -> None:
    """Decode latent points into structures (the decoder's mean).

    Examples:

      vaetraj decode latent.h5 -o path.pdb

      vaetraj decode --z 0.1,-0.3,0,0 --z 1,2,0,0 -o two.npz
    """

    def body():
        from vaetraj.pipeline.generate import decode_file, parse_points

        points = parse_points(z) if z else None
        config = config_from(SampleConfig, o)
        report = decode_file(
            latent, model, output, points=points, key=key, refine=config.refine,
            overwrite=o["overwrite"], relax=config.relax,
        )  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj decode")

    run_command(body, json_output=o["json_output"], debug=o["debug"])


@with_options(config_options(SampleConfig), OUTPUT_OPTIONS)
def sample_command(
    model: Path = ModelOption,
    output: Path = typer.Option(
        Path("samples.npz"),
        "-o",
        "--output",
        help="Structures: .npz, .h5 or any mdtraj format (.pdb, .dcd, .xtc, ...).",
    ),
    **o: Any,
) -> None:
    """Sample new conformations from the model, checked against the training data.

    Examples:

      vaetraj sample -n 1000                       # model.h5 -> samples.npz

      vaetraj sample -n 200 -o samples.pdb --temperature 0.8 --seed 1
    """

    def body():
        from vaetraj.pipeline.generate import sample_file

        config = config_from(SampleConfig, o)
        report = sample_file(
            model, output, config.n, seed=config.seed, prior=config.prior,
            temperature=config.temperature, refine=config.refine, overwrite=o["overwrite"],
            relax=config.relax,
        )  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj sample")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
