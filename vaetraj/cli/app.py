"""The `vaetraj` command line. Only typer and rich load at start-up; each command
imports what it needs (JAX included) when it runs, so `vaetraj --help` is quick."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import typer

from vaetraj._cache import enable_compile_cache
from vaetraj._version import __version__
from vaetraj.cli._runtime import SETTINGS_FILE, SETTINGS_META, load_settings, run_command
from vaetraj.cli.align import align_command
from vaetraj.cli.bias import bias_command
from vaetraj.cli.demo import demo_command
from vaetraj.cli.encode import encode_command
from vaetraj.cli.evaluate import evaluate_command
from vaetraj.cli.generate import decode_command, sample_command
from vaetraj.cli.kinetics import kinetics_command
from vaetraj.cli.optimize import HELP as optimize_help
from vaetraj.cli.optimize import optimize_command
from vaetraj.cli.plot import plot_command
from vaetraj.cli.simulate import simulate_app
from vaetraj.cli.train import HELP as train_help
from vaetraj.cli.train import train_command

app = typer.Typer(
    name="vaetraj",
    help="Learn the latent space of a molecular trajectory with a VAE, and use it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("demo")(demo_command)
app.command("align")(align_command)
app.command("train", help=train_help)(train_command)
app.command("encode")(encode_command)
app.command("decode")(decode_command)
app.command("sample")(sample_command)
app.command("optimize", help=optimize_help)(optimize_command)
app.command("evaluate")(evaluate_command)
app.command("plot")(plot_command)
app.command("kinetics")(kinetics_command)
app.command("bias")(bias_command)
app.add_typer(simulate_app, name="simulate")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"vaetraj {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
    settings: Path | None = typer.Option(
        None, "--settings", help="Settings file (default: ./vaetraj.toml when present)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """Every option of every command may be set in ./vaetraj.toml, e.g. [align] method = "kabsch"."""

    if debug:
        os.environ["VAETRAJ_DEBUG"] = "1"

    def apply_settings() -> None:
        enable_compile_cache()
        ctx.default_map = load_settings(ctx.command, settings)
        if ctx.default_map is not None:
            ctx.meta[SETTINGS_META] = settings or SETTINGS_FILE

    # settings errors are usage errors (exit 2), reported like any command's
    run_command(apply_settings, json_output=False, debug=debug)


def _click_exception() -> Any:
    """click's base exception, from click or from the copy typer >= 0.20 vendors."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """The `vaetraj` program. A bad command line is one line on stderr, like every
    other user error (click would draw a usage text and a box)."""
    import sys

    from vaetraj.cli._runtime import _Exit

    _Exit.hard = True
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="vaetraj", standalone_mode=False)
    except _click_exception() as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare command: its help
            app(prog_name="vaetraj")
        message = " ".join(error.format_message().split())
        ctx = getattr(error, "ctx", None)
        name = ctx.command_path if ctx is not None else "vaetraj"
        line = f"{name}: {message[:1].lower()}{message[1:]} (see {name} -h)"
        print(f"error: {line}", file=sys.stderr)
        if "--json" in sys.argv[1:]:  # the record a --json caller reads, even for this
            failure = {"ok": False, "error": line, "exit_code": error.exit_code}
            print(json.dumps(failure), flush=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(75)
    # the command has written its outputs: a signal now would only turn a complete run
    # into a death by signal while the interpreter shuts down (JAX's threads make that
    # take a while)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code if isinstance(code, int) else 0)
