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
from vaetraj.cli._runtime import finish_report, print_table, run_command


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
        return finish_report(report, json_output=json_output, print_summary=print_structures)

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
        return finish_report(report, json_output=json_output, print_summary=print_structures)

    run_command(body, json_output=json_output, debug=debug)


def _refined_row(report, units: str) -> str:
    """How far refinement moved the structures, and the decoder's own pass rate."""
    checked = report.raw_checked
    of = f" of {checked} checked" if checked is not None and checked < report.structures else ""
    return (
        f"moved {report.moved_median:.3g} {units} RMSD (median, max {report.moved_max:.3g}); "
        f"{report.raw_plausible_fraction:.1%}{of} were inside before"
    )


def _forcefield_rows(report) -> list[tuple[str, str]]:
    """`--relax openmm`: the force field's energies beside the MD frames'."""
    field = report.forcefield
    if field is None:
        return []
    low, high = field["energy_p5_p95_kj_mol"]
    text = f"median {field['energy_median_kj_mol']:.1f} (p5 to p95: {low:.1f} to {high:.1f})"
    if field["md_energy_p1_p99_kj_mol"] is not None:
        md_low, md_high = field["md_energy_p1_p99_kj_mol"]
        text += (
            f"; {field['inside_md_range']:.1%} inside the MD frames' p1 to p99 "
            f"({md_low:.1f} to {md_high:.1f}, {field['md_frames']} frames)"
        )
    return [("force field", field["forcefield"]), ("its energy (kJ/mol)", text)]


def print_structures(report) -> None:
    units = report.units
    rows = [
        ("output", report.output),
        (
            ("rows", f"{report.structures:,} ({report.features} features)")
            if report.features is not None
            else ("structures", f"{report.structures:,} ({report.atoms} atoms in {report.dims}D)")
        ),
    ]
    if report.prior is not None:
        rows.append(
            (
                "drawn from",
                f"{report.prior} prior, temperature {report.temperature:g}, seed {report.seed}",
            )
        )
    if report.plausible_fraction is not None:
        if report.refined:
            rows.append(("refined", _refined_row(report, units)))
        failing = ", ".join(
            f"{kind} {share:.1%}" for kind, share in report.failures.items() if share > 0
        )
        low, high = report.train_energy_range
        distances = ", ".join(f"{name} {value:.2g}" for name, value in report.distances.items())
        rows += [
            (
                "energy check",
                f"{report.plausible_fraction:.1%} inside the held-out MD frames' ranges "
                f"(MD frames: {report.train_plausible_fraction:.1%})"
                + (f"; outside: {failing}" if failing else ""),
            ),
            (
                "energy (kT)",
                f"median {report.energy_median:.3g} (MD frames' p1 to p99: {low:.3g} to "
                f"{high:.3g})",
            ),
            ("W1 to MD (spreads)", distances or "none"),
            *_forcefield_rows(report),
            (
                f"mean bond ({units})",
                f"{report.mean_bond:.4g} (training frames: {report.train_mean_bond:.4g})",
            ),
            (
                f"R_g ({units})",
                f"{report.rg_min:.4g} to {report.rg_max:.4g} (training frames: "
                f"{report.train_rg_min:.4g} to {report.train_rg_max:.4g})",
            ),
        ]
    rows.append(("wall time", f"{report.wall_time_s:.1f} s"))
    print_table(f"vaetraj {report.command}", rows)
