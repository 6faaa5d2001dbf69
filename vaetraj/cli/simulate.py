"""`vaetraj simulate polymer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vaetraj.cli._options import OUTPUT_OPTIONS, config_from, config_options, with_options
from vaetraj.cli._runtime import print_table, run_command
from vaetraj.configs import PolymerConfig

simulate_app = typer.Typer(help="Built-in simulations.", no_args_is_help=True)


@simulate_app.command("polymer")
@with_options(config_options(PolymerConfig), OUTPUT_OPTIONS)
def polymer_command(
    output: Path = typer.Option(
        Path("polymer.npz"), "-o", "--output", help=".npz (key 'arr') or .npy to write."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Random seed; the same seed gives the same trajectory."
    ),
    **o: Any,
) -> None:
    """Langevin dynamics of a bead-spring polymer (harmonic bonds and angles,
    Lennard-Jones between non-bonded beads), the built-in data set.

    Example:

      vaetraj simulate polymer -o polymer.npz --beads 12 --dim 2 --frames 2048 --seed 0
    """

    def body():
        from vaetraj.pipeline.simulate import simulate_polymer_file

        config = config_from(PolymerConfig, o)
        report = simulate_polymer_file(output, config, seed=seed, overwrite=o["overwrite"])
        if not o["json_output"]:
            print_table(
                "vaetraj simulate polymer",
                [
                    ("output", report.output),
                    (
                        "frames",
                        f"{report.frames} of {report.beads} beads in {report.dim}D (seed {report.seed})",
                    ),
                    ("mean bond", f"{report.mean_bond:.3f}"),
                    ("closest non-bonded pair", f"{report.min_nonbonded_distance:.3f}"),
                    ("mean R_g", f"{report.mean_rg:.3f}"),
                    ("wall time", f"{report.wall_time_s:.2f} s"),
                ],
            )
        return report.to_dict()

    run_command(body, json_output=o["json_output"], debug=o["debug"])
