"""`vaetraj align`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import OUTPUT_OPTIONS, config_from, config_options, with_options
from vaetraj.cli._runtime import finish_report, progress_bar, run_command
from vaetraj.configs import AlignConfig, ReadOptions

InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[INPUT]...",
        help="Trajectory files, concatenated in order. None: the built-in polymer.",
    ),
]


@with_options(config_options(AlignConfig), config_options(ReadOptions), OUTPUT_OPTIONS)
def align_command(
    inputs: InputsArg = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Aligned .h5 file to write.")
    ] = Path("aligned.h5"),
    **o: Any,
) -> None:
    """Centre frames and rotate them onto principal axes or a reference (Kabsch).

    Each frame is centred on its centre of mass (mass-weighted when the topology gives
    masses), rotated, and streamed into an aligned .h5, so memory stays bounded.

    Examples:

      vaetraj align                                  # the built-in polymer -> aligned.h5

      vaetraj align ala2.dcd --top ala2.pdb --method kabsch --reference mean --select "not element H"
    """

    def body():
        from vaetraj.pipeline.align import align_file

        config, options = config_from(AlignConfig, o), config_from(ReadOptions, o)
        with progress_bar(not o["json_output"]) as progress:
            report = align_file(inputs, output, config, options, overwrite=o["overwrite"],
                                progress=progress)  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj align")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
