"""What every command shares: settings from vaetraj.toml, one-line errors with the exit
codes of docs/pages/exit-codes.md, --json records, and progress bars only on a terminal."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from vaetraj._interrupt import clear_stop, deferred, should_raise_now, stop_requested
from vaetraj.configs import renamed_flags
from vaetraj.errors import (
    EXIT_INPUT_MISSING,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    UsageError,
    VaetrajError,
)

SETTINGS_FILE = "vaetraj.toml"
SETTINGS_META = "vaetraj.settings"  # the root context's meta: the settings file read


# what a command body returns when it must print nothing, not even --json's record (a
# process of a run over several other than process 0)
SILENT: dict[str, Any] = {"silent": True}


def keep_stdout_for_records() -> None:
    """Drop what native libraries print to stdout (gloo's "[Gloo] Rank 0 is connected"
    lines: chatter, not a result) and keep the real stdout for the command's own output
    (its table, or --json's record). Their errors go to stderr, which is untouched."""
    sys.stdout.flush()
    real = os.dup(1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.close(quiet)
    sys.stdout = os.fdopen(real, "w", buffering=1)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def result_console():
    """Where a command's result table goes: stdout, the command's output (`vaetraj demo
    > log.txt` keeps it); --json prints its record there instead, and progress, notes
    and errors go to stderr."""
    from rich.console import Console

    return Console(highlight=False)


def say(message: str) -> None:
    """A message for the user: one line on stderr, never wrapped."""
    print(message, file=sys.stderr)


def finish_report(
    report,
    *,
    json_output: bool,
    title: str = "",
    print_summary: Callable[[Any], None] | None = None,
) -> dict:
    """A command's ending: its notes on stderr, its summary unless --json (the table of
    `report.rows()` under `title`, or `print_summary`'s own), and the record that --json
    prints."""
    for note in report.notes:
        say(f"note: {note}")
    if not json_output:
        if print_summary is not None:
            print_summary(report)
        else:
            print_table(title, report.rows())
    return report.to_dict()


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    if path.is_dir():
        raise UsageError("is a folder, not a settings file", path=path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"invalid TOML ({error})", path=path) from None
    except UnicodeDecodeError:
        raise UsageError("is not a TOML text file (it is not UTF-8 text)", path=path) from None


def _command_options(command) -> dict[str, Any]:
    """Settable options of a command (its long flag without dashes, as a setting's
    key -> click parameter) or group (name -> its subcommands' options), recursively."""
    if isinstance(command, TyperGroup):
        return {name: _command_options(sub) for name, sub in command.commands.items()}
    return {
        max(param.opts, key=len).lstrip("-").replace("-", "_"): param
        for param in command.params
        if param.name not in ("debug", "json_output")
    }


def _annotation(param) -> Any:
    """What an option takes: its Python annotation (typer >= 0.20 keeps it), else a
    stand-in from its click type's name (older typer)."""
    described = getattr(param, "type_descriptor", None)
    if described is not None:
        return described.annotation
    kind = str(getattr(getattr(param, "type", None), "name", "text"))
    # click's names: "integer", "integer range", "float", "float range", "boolean", ...
    stand_in = next((t for word, t in (("integer", int), ("float", float), ("boolean", bool))
                     if word in kind), str)  # fmt: skip
    choices = getattr(param.type, "choices", None)
    return list(choices) if choices else stand_in


def _check_scalar(annotation: Any, value: Any, key: str, path: Path) -> None:
    """One TOML value against what its option takes; the error names the key."""
    import enum

    choices = None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = [str(member.value) for member in annotation]
    elif isinstance(annotation, list):
        choices = [str(choice) for choice in annotation]
    if annotation is bool:
        ok, wanted = isinstance(value, bool), "true or false"
    elif annotation is int:
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        wanted = "a number"
    elif choices is not None:
        ok, wanted = value in choices, "one of " + ", ".join(choices)
    else:
        ok, wanted = isinstance(value, str), "a string (in quotes)"
    if not ok:
        shown = json.dumps(value) if isinstance(value, (bool, str, int, float)) else repr(value)
        raise UsageError(f"{key} must be {wanted}, got {shown}", path=path)


def _setting_value(param, value: Any, path: Path, key: str) -> Any:
    """A setting's value checked against what its option takes (the error names the
    file and the key, not the flag); a TOML array for an option that takes a
    comma-separated list (a string) becomes that list."""
    annotation = _annotation(param)
    if isinstance(value, dict):
        raise UsageError(f"{key} takes a value, not a table", path=path)
    if getattr(param, "multiple", False) or getattr(annotation, "__origin__", None) is list:
        items = value if isinstance(value, list) else [value]
        inner = getattr(annotation, "__args__", (str,))[0]
        for item in items:
            _check_scalar(str if inner is Path else inner, item, key, path)
        return items
    if isinstance(value, list):
        if annotation is not str or any(isinstance(v, (list, dict, bool)) for v in value):
            raise UsageError(f"{key} takes one value, not an array", path=path)
        value = ",".join(str(v) for v in value)
    _check_scalar(str if annotation is Path else annotation, value, key, path)
    if annotation in (int, float):
        _check_range(param, value, key, path)
    return value


def _check_range(param, value: float, key: str, path: Path) -> None:
    """The option's own bounds (min=/max= on the option, or an older click's range type)."""
    low = getattr(param, "min", getattr(getattr(param, "type", None), "min", None))
    high = getattr(param, "max", getattr(getattr(param, "type", None), "max", None))
    if low is not None and value < low:
        raise UsageError(f"{key} must be at least {low}, got {value}", path=path)
    if high is not None and value > high:
        raise UsageError(f"{key} must be at most {high}, got {value}", path=path)


def _normalize(
    settings: dict[str, Any], allowed: dict[str, Any], path: Path, where: str = ""
) -> dict[str, Any]:
    normalized: dict[str, Any] = {}
    for key, value in settings.items():
        name = key.replace("-", "_") if not isinstance(value, dict) else key
        section = f"[{where}] " if where else ""
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "nothing"
            raise UsageError(f"{section}unknown setting '{key}' (known: {known})", path=path)
        if isinstance(allowed[name], dict):
            if not isinstance(value, dict):
                raise UsageError(f"'{key}' must be a table like [{key}]", path=path)
            normalized[name] = _normalize(value, allowed[name], path, f"{where}.{key}".strip("."))
        else:  # click's default map is by parameter name (--featurize's is "kind")
            value = _setting_value(allowed[name], value, path, f"{section}{key}")
            normalized[allowed[name].name] = value
    return normalized


def _current_context() -> Any:
    """click's context of the command now running (click's, or the copy typer >= 0.20
    vendors), or None."""
    import importlib

    core = next(
        c for c in typer.Context.__mro__ if c.__name__ == "Context" and c is not typer.Context
    )
    module = importlib.import_module(core.__module__.rsplit(".", 1)[0] + ".globals")
    return module.get_current_context(silent=True)


def blame_settings(message: str) -> str:
    """An error about an option whose value came from the settings file names the file
    and the key before the message (the user never typed the flag)."""
    ctx = _current_context()
    path = ctx.find_root().meta.get(SETTINGS_META) if ctx is not None else None
    if path is None:
        return message
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        flags = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")]
        if getattr(source, "name", "") != "DEFAULT_MAP" or not flags:
            continue
        if any(re.search(rf"{re.escape(flag)}(?![\w-])", message) for flag in flags):
            key = max(flags, key=len).lstrip("-").replace("-", "_")  # as the file names it
            return f"{path}: [{ctx.info_name}] {key}: {message}"
    return message


def load_settings(group: Any, path: Path | None = None) -> dict[str, Any] | None:
    """Defaults for every command from `path` or ./vaetraj.toml, checked against the
    commands' options as the command line would check them; None when there is no
    file."""
    from vaetraj.io._paths import require_input

    explicit = path is not None
    path = path or Path(SETTINGS_FILE)
    if not os.path.lexists(path) and not explicit:
        return None
    require_input(path, "settings file")  # a link to nothing, or a loop: not ignored
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
    if _Exit.hard and stop_requested():  # a signal while the command line was parsed
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        sys.unraisablehook = previous_hook
        _fail("interrupted; no output was written", EXIT_INTERRUPTED, json_output)
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
        message = error.as_flag(renamed_flags())
        if isinstance(error, UsageError):
            message = blame_settings(message)
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
    result_console().print(table)
