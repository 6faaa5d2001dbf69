"""Errors a user can cause, each with the exit code of ../DESIGN.md.

Anything raised that is not a `VaetrajError` is a bug: the CLI shows its traceback and
exits 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NUMERICAL = 3
EXIT_BAD_INPUT = 65
EXIT_INPUT_MISSING = 66
EXIT_OUTPUT_EXISTS = 73
EXIT_WRITE = 74
EXIT_INTERRUPTED = 75


class VaetrajError(Exception):
    """A problem with what the user gave us, reported as one line."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UsageError(VaetrajError):
    exit_code = EXIT_USAGE


class NumericalError(VaetrajError):
    exit_code = EXIT_NUMERICAL


class BadInputError(VaetrajError):
    exit_code = EXIT_BAD_INPUT


class InputMissingError(VaetrajError):
    exit_code = EXIT_INPUT_MISSING


class OutputError(VaetrajError):
    """The output exists already, or its file cannot be created."""

    exit_code = EXIT_OUTPUT_EXISTS


class WriteError(VaetrajError):
    """Writing failed part-way (disk full, read-only file system)."""

    exit_code = EXIT_WRITE


class InterruptedRunError(VaetrajError):
    exit_code = EXIT_INTERRUPTED
