"""`vaetraj demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from vaetraj.cli._options import DebugOption, JsonOption, OverwriteOption
from vaetraj.cli._runtime import finish_report, progress_bar, result_console, run_command
from vaetraj.configs import SampleConfig, TrainConfig


def demo_command(
    directory: Path = typer.Argument(
        Path("vaetraj-demo"), metavar="[DIR]", help="Folder for every output."
    ),
    epochs: int = typer.Option(TrainConfig.epochs, "--epochs", help="Training epochs."),
    latent_dim: int | None = typer.Option(
        None, "--latent-dim", help="Latent size (default: train's, 4; 2 is the textbook's)."
    ),
    samples: int = typer.Option(SampleConfig.n, "-n", "--samples", help="Conformations to sample."),
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Run the whole pipeline on the built-in polymer, into DIR.

    Simulate (cached), align, train, encode, sample, optimize R_g, evaluate and plot;
    about a minute on a laptop CPU.

    Examples:

      vaetraj demo

      vaetraj demo my-demo --epochs 100
    """

    def body():
        from vaetraj.pipeline.demo import run_demo

        with progress_bar(not json_output) as progress:
            report = run_demo(
                directory,
                epochs=epochs,
                latent_dim=latent_dim,
                samples=samples,
                overwrite=overwrite,
                progress=progress,
            )
        return finish_report(report, json_output=json_output, print_summary=_print_summary)

    run_command(body, json_output=json_output, debug=debug)


def _print_summary(report) -> None:
    from rich.table import Table

    table = Table(title=f"vaetraj demo -> {report.directory}", title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("result")
    table.add_column("time", justify="right")
    for step in report.steps:
        table.add_row(step["step"], step["result"], f"{step['seconds']:.1f} s")
    table.add_row("total", "", f"{report.wall_time_s:.1f} s", style="bold")
    result_console().print(table)
