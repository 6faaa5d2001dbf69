"""What every command shares: settings from vaetraj.toml, one-line errors with the exit
codes of docs/pages/exit-codes.md, --json records, and progress bars only on a terminal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from vaetraj._interrupt import clear_stop, deferred, should_raise_now
from vaetraj.errors import (
    EXIT_INPUT_MISSING,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    ConfigError,
    UsageError,
    VaetrajError,
)

SETTINGS_FILE = "vaetraj.toml"
# config fields whose command-line option is not --field-name
FLAGS = {"learning_rate": "--lr"}


# what a command body returns when it must print nothing, not even --json's record (a
# process of a run over several other than process 0)
SILENT: dict[str, Any] = {"silent": True}


def keep_stdout_for_records() -> None:
    """Send what native libraries print to stdout (gloo's connection lines) to stderr,
    and keep the real stdout for the command's own records (--json)."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(real, "w", buffering=1)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """A message for the user: one line on stderr, never wrapped."""
    print(message, file=sys.stderr)


def finish_report(report, *, json_output: bool, print_summary: Callable[[Any], None]) -> dict:
    """A command's ending: its notes on stderr, its summary table unless --json, and
    the record that --json prints."""
    for note in report.notes:
        say(f"note: {note}")
    if not json_output:
        print_summary(report)
    return report.to_dict()


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"invalid TOML ({error})", path=path) from None


def _command_options(command) -> dict[str, Any]:
    """Settable names of a command (params) or group (subcommands), recursively."""
    if isinstance(command, TyperGroup):
        return {name: _command_options(sub) for name, sub in command.commands.items()}
    return {
        param.name: None for param in command.params if param.name not in ("debug", "json_output")
    }


def _normalize(
    settings: dict[str, Any], allowed: dict[str, Any], path: Path, where: str = ""
) -> dict[str, Any]:
    normalized: dict[str, Any] = {}
    for key, value in settings.items():
        name = key.replace("-", "_") if not isinstance(value, dict) else key
        if name not in allowed:
            section = f"[{where}] " if where else ""
            known = ", ".join(sorted(allowed)) or "nothing"
            raise UsageError(f"{section}unknown setting '{key}' (known: {known})", path=path)
        if isinstance(allowed[name], dict):
            if not isinstance(value, dict):
                raise UsageError(f"'{key}' must be a table like [{key}]", path=path)
            normalized[name] = _normalize(value, allowed[name], path, f"{where}.{key}".strip("."))
        else:
            normalized[name] = value
    return normalized


def load_settings(group: Any, path: Path | None = None) -> dict[str, Any] | None:
    """Defaults for every command from `path` or ./vaetraj.toml, checked against the
    commands' options; None when there is no file."""
    explicit = path is not None
    path = path or Path(SETTINGS_FILE)
    if not path.exists():
        if explicit:
            from vaetraj.errors import InputMissingError

            raise InputMissingError("no such settings file", path=path)
        return None
    return _normalize(_load_toml(path), _command_options(group), path)


def _terminate(signum, frame):  # SIGTERM is an interrupt like Ctrl-C: clean up, exit 75
    if should_raise_now():  # else the run stops at its next safe point (check_stop)
        raise KeyboardInterrupt


def keep_termination_handler() -> None:
    """Take SIGTERM back once `jax.distributed` has started: its preemption notifier
    installs a handler of its own, which swallowed the signal (a run went on to its
    end and exited 0)."""
    signal.signal(signal.SIGTERM, _terminate)


class _Exit:
    """Set by `main` (the installed `vaetraj` program, not an in-process caller): a
    failed command leaves with os._exit once it has reported and cleaned up. JAX's
    compiler threads or an HDF5 file whose write failed otherwise crash the interpreter
    as it shuts down (segfault, exit 139) after the error line."""

    hard = False


def run_command(
    body: Callable[[], dict[str, Any] | None], *, json_output: bool, debug: bool
) -> None:
    """Run a command body; report its result or its error (docs/pages/exit-codes.md)."""
    debug = debug or bool(os.environ.get("VAETRAJ_DEBUG"))
    previous = signal.signal(signal.SIGTERM, _terminate)
    previous_int = signal.signal(signal.SIGINT, _terminate)
    previous_hook = sys.unraisablehook

    def unraisable(info) -> None:
        # a signal's KeyboardInterrupt raised inside a GC callback (JAX has one) cannot
        # propagate: the stop request it recorded ends the run at its next check
        if not isinstance(info.exc_value, KeyboardInterrupt):
            previous_hook(info)

    sys.unraisablehook = unraisable
    clear_stop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            with deferred():  # a signal stops the run at its next safe point
                record = body()
    except VaetrajError as error:
        if debug:
            traceback.print_exc()
        message = error.as_flag(FLAGS) if isinstance(error, ConfigError) else str(error)
        _fail(message, error.exit_code, json_output, error.record)
    except KeyboardInterrupt:
        _fail("interrupted; no output was written", EXIT_INTERRUPTED, json_output)
    except PermissionError as error:  # an input we may not read (outputs: check_output)
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}cannot read it: permission denied", EXIT_INPUT_MISSING, json_output)
    except typer.Exit:
        raise
    except Exception as error:  # a bug: show it whole
        traceback.print_exc()
        _fail(
            f"internal error: {type(error).__name__}: {error} (please report it)",
            EXIT_INTERNAL,
            json_output,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        sys.unraisablehook = previous_hook
    if json_output and record is not SILENT:
        typer.echo(json.dumps({"ok": True, **(record or {})}, default=str))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from vaetraj.errors import VaetrajWarning

    if issubclass(category, VaetrajWarning):
        print(f"warning: {message}", file=sys.stderr)


def _fail(message: str, code: int, json_output: bool, record: dict[str, Any] | None = None) -> None:
    """The error line; with --json, the error record (and what the command got done
    before it failed, when the error carries that)."""
    print(f"error: {message}", file=sys.stderr)
    if json_output:
        failure = {"ok": False, "error": message, "exit_code": code, **(record or {})}
        typer.echo(json.dumps(failure, default=str))
    if _Exit.hard:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[..., None] | None]:
    """A progress callback drawing a rich bar on stderr, or None when stdout is not a
    terminal (or --json is on): pipes and log files get no bar. The callback takes
    (done, total, phase) and an optional detail line (losses, throughput)."""
    if not (enabled and sys.stdout.isatty()):
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}"),
        console=_console(),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(done: int, total: int | None, phase: str, detail: str = "") -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, detail=detail)
            bar.update(tasks[phase], completed=done, detail=detail)

        yield update


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    _console().print(table)
