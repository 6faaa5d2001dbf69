"""`vaetraj align`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vaetraj.cli._options import DebugOption, FrameTimeOption, JsonOption, OverwriteOption
from vaetraj.cli._runtime import finish_report, print_table, progress_bar, run_command


class Method(str, Enum):
    principal = "principal"
    kabsch = "kabsch"
    none = "none"


def _parse_reference(text: str | None) -> int | str | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[INPUT]...",
        help="Trajectory files, concatenated in order. None: the built-in polymer.",
    ),
]

OutputArg = Annotated[
    Path,
    typer.Option("-o", "--output", help="Aligned .h5 file to write."),
]

MethodArg = Annotated[
    Method,
    typer.Option(
        "--method",
        help="principal: principal axes; kabsch: superpose on a reference; none: centre only.",
    ),
]

ReferenceArg = Annotated[
    str | None,
    typer.Option(
        "--reference",
        help="kabsch: frame INDEX, 'mean' (iterate to the average), or a structure FILE. Default: frame 0.",
    ),
]

TopArg = Annotated[
    Path | None,
    typer.Option("--top", help="Topology (PDB, ...) for formats without one."),
]

SelectArg = Annotated[
    str | None,
    typer.Option("--select", help="mdtraj selection, e.g. 'name CA' or 'not element H'."),
]

StrideArg = Annotated[
    int,
    typer.Option("--stride", min=1, help="Keep every Nth frame of each file."),
]

KeyArg = Annotated[
    str | None,
    typer.Option("--key", help="Array name in an .npz holding several."),
]

EqualMassesArg = Annotated[
    bool,
    typer.Option(
        "--equal-masses", help="Weight all atoms alike even when the topology gives masses."
    ),
]

AllowPartialArg = Annotated[
    bool,
    typer.Option(
        "--allow-partial", help="Keep the whole frames of a file that ends inside a frame."
    ),
]


def align_command(
    inputs: InputsArg = None,
    output: OutputArg = Path("aligned.h5"),
    method: MethodArg = Method.principal,
    reference: ReferenceArg = None,
    top: TopArg = None,
    select: SelectArg = None,
    stride: StrideArg = 1,
    key: KeyArg = None,
    equal_masses: EqualMassesArg = False,
    allow_partial: AllowPartialArg = False,
    frame_time: float | None = FrameTimeOption,
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Centre frames and rotate them onto principal axes or a reference (Kabsch).

    Each frame is centred on its centre of mass (mass-weighted when the topology gives
    masses), rotated, and streamed into an aligned .h5, so memory stays bounded.

    Examples:

      vaetraj align                                  # the built-in polymer -> aligned.h5

      vaetraj align ala2.dcd --top ala2.pdb --method kabsch --reference mean --select "not element H"
    """

    def body():
        from vaetraj.io.trajectory import ReadOptions
        from vaetraj.pipeline.align import AlignConfig, align_file

        config = AlignConfig(
            method=method.value, reference=_parse_reference(reference), equal_masses=equal_masses
        )
        options = ReadOptions(
            top=top,
            select=select,
            stride=stride,
            key=key,
            allow_partial=allow_partial,
            frame_time=frame_time,
        )
        with progress_bar(not json_output) as progress:
            report = align_file(
                inputs, output, config, options, overwrite=overwrite, progress=progress
            )
        return finish_report(report, json_output=json_output, print_summary=_print_summary)

    run_command(body, json_output=json_output, debug=debug)


def _print_summary(report) -> None:
    rows = [
        ("output", report.output),
        ("frames", f"{report.frames}"),
        ("atoms", f"{report.atoms} in {report.dims}D ({report.weights} weights)"),
        (
            "method",
            f"{report.method}"
            + (f", reference {report.reference}" if report.method == "kabsch" else ""),
        ),
        (
            f"RMSD ({report.units})",
            f"min {report.rmsd_min:.4g}, mean {report.rmsd_mean:.4g}, max {report.rmsd_max:.4g} ({report.rmsd_of})",
        ),
    ]
    if report.method == "principal":
        rows += [
            ("ambiguous frames", f"{report.ambiguous_frames} (nearly degenerate axes or sign)"),
            (
                "axis swaps",
                f"{report.axis_swaps} between consecutive frames, {report.sign_flips} sign flips",
            ),
        ]
    rows.append(("wall time", f"{report.wall_time_s:.2f} s"))
    print_table("vaetraj align", rows)
