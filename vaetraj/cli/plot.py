"""`vaetraj plot`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import OUTPUT_OPTIONS, ModelOption, OptionGroup, with_options
from vaetraj.cli._runtime import finish_report, run_command


class Color(str, Enum):
    time = "time"
    rg = "rg"


PLOT_INPUTS: OptionGroup = {
    "latent": (Annotated[Path | None, typer.Option(help="Latent path from `encode` (default latent.h5 when present).")], None),
    "data": (Annotated[Path | None, typer.Option(help="Training-like frames (default aligned.h5 when present).")], None),
    "samples": (Annotated[Path | None, typer.Option(help="Samples from `sample` (default samples.npz when present).")], None),
    "optimized": (Annotated[Path | None, typer.Option(help="Structure from `optimize` (default optimized.npz when present).")], None),
    "weights": (Annotated[Path | None, typer.Option(help="Per-frame weights of the latent path's frames (a `vaetraj bias` .h5, .npy or text): draws free_energy.png, the reweighted free energy over z0, z1.")], None),
}  # fmt: skip


@with_options(PLOT_INPUTS, OUTPUT_OPTIONS)
def plot_command(
    output: Path = typer.Option(Path("figures"), "-o", "--output", help="Folder for the PNGs."),
    model: Path = ModelOption,
    only: str | None = typer.Option(
        None, "--only", help="Comma-separated: loss, latent, marginals, structures, free_energy."
    ),
    color: Color = typer.Option(Color.time, "--color", help="Colour the latent path by."),
    **o: Any,
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

        inputs = {name: o[name] for name in PLOT_INPUTS}
        report = plot_file(model, output, **inputs, color=color.value, overwrite=o["overwrite"],
                           only=[item.strip() for item in only.split(",")] if only else None)  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj plot")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
