"""`vaetraj plot`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from vaetraj.cli._options import DebugOption, JsonOption, ModelOption, OverwriteOption
from vaetraj.cli._runtime import finish_report, run_command


class Color(str, Enum):
    time = "time"
    rg = "rg"


def plot_command(
    output: Path = typer.Option(Path("figures"), "-o", "--output", help="Folder for the PNGs."),
    model: Path = ModelOption,
    latent: Path | None = typer.Option(
        None, "--latent", help="Latent path from `encode` (default latent.h5 when present)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Training-like frames (default aligned.h5 when present)."
    ),
    samples: Path | None = typer.Option(
        None, "--samples", help="Samples from `sample` (default samples.npz when present)."
    ),
    optimized: Path | None = typer.Option(
        None,
        "--optimized",
        help="Structure from `optimize` (default optimized.npz when present).",
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Per-frame weights of the latent path's frames (a `vaetraj bias` .h5, .npy or "
        "text): draws free_energy.png, the reweighted free energy over z0, z1.",
    ),
    only: str | None = typer.Option(
        None, "--only", help="Comma-separated: loss, latent, marginals, structures, free_energy."
    ),
    color: Color = typer.Option(Color.time, "--color", help="Colour the latent path by."),
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Draw PNG figures: loss, latent path, marginals, most compact structures, and the
    free energy of biased frames.

    Draws what the inputs allow: loss curves, the latent path, data vs sample marginals
    of pairwise distances, the most compact training frame vs the optimized one, and
    with --weights the reweighted free energy on the latent map.

    Examples:

      vaetraj plot                                 # everything found in ./ -> figures/

      vaetraj plot --only latent --latent paths.h5 --color rg -o figs

      vaetraj plot --latent biased_latent.h5 --weights bias.h5 --only free_energy
    """

    def body():
        from vaetraj.pipeline.plot import plot_file

        report = plot_file(
            model,
            output,
            latent=latent,
            data=data,
            samples=samples,
            optimized=optimized,
            weights=weights,
            only=[item.strip() for item in only.split(",")] if only else None,
            color=color.value,
            overwrite=overwrite,
        )
        return finish_report(report, json_output=json_output, title="vaetraj plot")

    run_command(body, json_output=json_output, debug=debug)
