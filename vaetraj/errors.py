"""Errors a user can cause, each with its exit code (docs/pages/exit-codes.md).

Anything raised that is not a `VaetrajError` is a bug: the CLI shows its traceback and
exits 1.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NUMERICAL = 3
EXIT_BAD_INPUT = 65
EXIT_INPUT_MISSING = 66
EXIT_OUTPUT_EXISTS = 73
EXIT_WRITE = 74
EXIT_INTERRUPTED = 75


class VaetrajWarning(UserWarning):
    """Something the user should know that does not stop the run."""


class VaetrajError(Exception):
    """A problem with what the user gave us, reported as one line. `fields`: the config
    fields or arguments the message names as the Python caller passed them (`lag`);
    `as_flag` names their command-line options instead (`--lag`), which the CLI prints."""

    exit_code = EXIT_INTERNAL
    record: dict[str, Any] | None = None  # what --json prints beside the error, if any

    def __init__(
        self, message: str, *, path: object | None = None, fields: tuple[str, ...] = ()
    ) -> None:
        self.path = None if path is None else str(path)
        self.fields = fields
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def as_flag(self, flags: dict[str, str] | None = None) -> str:
        """The message with each of `fields` as its option (`flags` maps the fields
        whose option is not --field-name)."""
        return _flagged(str(self), self.fields, flags)


def _flagged(text: str, fields: tuple[str, ...], flags: dict[str, str] | None) -> str:
    import re

    for name in fields:
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        # the name as a word, not part of a path or file name (/data/lag/m.h5, lag.h5)
        text = re.sub(rf"(?<![\w\-/.]){re.escape(name)}(?![\w\-/]|\.\w)", flag, text)
    return text


class UsageError(VaetrajError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config field out of its range. The message names the field ("epochs must be
    at least 1, got 0"); `as_flag` names the command-line option instead, which the
    CLI prints."""

    def __init__(self, field: str, rule: str, value: object, *, also: tuple[str, ...] = ()) -> None:
        self.field, self.rule, self.value, self.also = field, rule, value, also
        super().__init__(f"{field} {rule}, got {value!r}")

    def as_flag(self, flags: dict[str, str] | None = None) -> str:
        """The message with the field as its option (and the other fields its rule
        names, `also`): `flags` maps the fields whose option is not --field-name."""

        def flag(name: str) -> str:
            return (flags or {}).get(name, "--" + name.replace("_", "-"))

        rule = self.rule
        for name in self.also:
            rule = rule.replace(name, flag(name))
        return f"{flag(self.field)} {rule}, got {self.value!r}"


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


class TrainingFailedError(NumericalError):
    """Training ran to its end, but the model it left does not work (its reconstructions
    explain almost none of the data). `model` and `report` hold it for inspection;
    `record` is what --json prints beside the error."""

    def __init__(self, message: str, *, model: Any, report: Any, path: object | None = None):
        super().__init__(message, path=path)
        self.model, self.report = model, report
        self.record = report.to_dict()
