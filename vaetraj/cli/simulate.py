"""`vaetraj simulate polymer`."""

from __future__ import annotations

from pathlib import Path

import typer

from vaetraj.cli._options import DebugOption, JsonOption, OverwriteOption
from vaetraj.cli._runtime import print_table, run_command

simulate_app = typer.Typer(help="Built-in simulations.", no_args_is_help=True)


@simulate_app.command("polymer")
def polymer_command(
    output: Path = typer.Option(
        Path("polymer.npz"), "-o", "--output", help=".npz (key 'arr') or .npy to write."
    ),
    beads: int = typer.Option(12, "--beads", help="Beads in the chain."),
    dim: int = typer.Option(2, "--dim", help="2 or 3 dimensions."),
    frames: int = typer.Option(2048, "--frames", help="Frames to record."),
    stride: int = typer.Option(200, "--stride", help="Integration steps between recorded frames."),
    temperature: float = typer.Option(1.0, "--temperature", help="kT in reduced units."),
    seed: int = typer.Option(
        0, "--seed", help="Random seed; the same seed gives the same trajectory."
    ),
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Langevin dynamics of a bead-spring polymer (harmonic bonds and angles,
    Lennard-Jones between non-bonded beads), the built-in data set.

    Example:

      vaetraj simulate polymer -o polymer.npz --beads 12 --dim 2 --frames 2048 --seed 0
    """

    def body():
        from vaetraj.errors import UsageError
        from vaetraj.pipeline.simulate import simulate_polymer_file
        from vaetraj.simulate import PolymerConfig

        try:
            config = PolymerConfig(
                beads=beads, dim=dim, frames=frames, stride=stride, temperature=temperature
            )
        except ValueError as error:
            raise UsageError(str(error).replace("PolymerConfig.", "--")) from None
        report = simulate_polymer_file(output, config, seed=seed, overwrite=overwrite)
        if not json_output:
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

    run_command(body, json_output=json_output, debug=debug)
