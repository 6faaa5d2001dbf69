"""Options made from config fields (`config_options`, read back by `config_from`),
option groups declared once and added to a command's signature (`with_options`), and
the options every command has."""

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.configs import cli_fields, flag_of
from vaetraj.errors import UsageError

OptionGroup = dict[str, tuple[Any, Any]]  # parameter name -> (Annotated type, default)


@functools.cache
def choice_enum(name: str, choices: tuple[str, ...]) -> type[Enum]:
    """A str Enum of the choices (typer lists them and refuses others)."""
    return Enum(name, {choice: choice for choice in choices}, type=str)  # type: ignore[return-value]


def config_options(
    config_class: type,
    *,
    skip: tuple[str, ...] = (),
    panel: str | None = None,
    optional: tuple[str, ...] = (),
    helps: dict[str, str] | None = None,
) -> OptionGroup:
    """The options of a config's fields that are declared with `vaetraj.configs.option`:
    flag, help, choices and default all come from the field (a tuple field is given
    comma-separated; `config_from` reads the values back). `optional`: fields whose
    option defaults to None (not given) instead of the field's default; `helps`: a
    command's own help for some fields."""
    hints = typing.get_type_hints(config_class)
    group: OptionGroup = {}
    for field in cli_fields(config_class):
        if field.name in skip:
            continue
        meta, kind = field.metadata, hints[field.name]
        default: Any = ... if field.default is MISSING else field.default  # ...: required
        if meta["cli_type"] is not None:
            kind = meta["cli_type"] if default is not None else meta["cli_type"] | None
        elif meta["choices"]:
            kind = choice_enum(field.name.title().replace("_", ""), meta["choices"])
            default = kind(default)
        elif _item_type(kind) is not None:
            kind = str | None if default is None else str
            default = None if default is None else ",".join(str(item) for item in default)
        parameter = typer.Option(
            *flag_of(field).split(" "),
            help=(helps or {}).get(field.name, meta["help"]),
            metavar=meta["metavar"],
            show_default=meta["show_default"],
            min=meta["minimum"],
            rich_help_panel=panel,
        )
        if field.name in optional:
            kind, default = kind | None, None
        group[field.name] = (Annotated[kind, parameter], default)
    return group


def config_from(config_class: type, options: dict[str, Any], **changes: Any) -> Any:
    """The config of the options `config_options` made (choices' values, tuples split
    at commas; a bad number is refused naming its flag), with `changes` on top."""
    hints = typing.get_type_hints(config_class)
    values = {}
    for field in cli_fields(config_class):
        if field.name not in options:
            continue
        value = options[field.name]
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, str) and _item_type(hints[field.name]) is not None:
            value = _split(value, _item_type(hints[field.name]), flag_of(field))
        values[field.name] = value
    return config_class(**{**values, **changes})


def _item_type(hint: Any) -> Any:
    """The item type of a tuple field (`tuple[int, ...]`, optional or not), else None."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is tuple:
            return typing.get_args(candidate)[0]
    return None


def _split(text: str, item: Any, flag: str) -> tuple:
    """A comma-separated tuple field's value, as its items' type (int or str)."""
    try:
        return tuple(item(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{flag} takes whole numbers separated by commas, got '{text}'") from None


def with_options(*groups: OptionGroup) -> Callable[[Callable], Callable]:
    """Add the groups' options to a command whose last parameter is `**grouped`: typer
    reads them from the signature, and the command gets them as keyword arguments."""

    def wrap(function: Callable) -> Callable:
        signature = inspect.signature(function, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )  # fmt: skip
            for group in groups
            for name, (annotation, default) in group.items()
        ]
        function.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return function

    return wrap


# the options every command that writes has, as a group (`with_options`, last)
OUTPUT_OPTIONS: OptionGroup = {
    "overwrite": (Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")], False),
    "json_output": (Annotated[bool, typer.Option("--json", help="Print one JSON result record on stdout.")], False),
    "debug": (Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")], False),
}  # fmt: skip
OverwriteOption = typer.Option(False, "--overwrite", help="Replace an existing output.")
# a model's own atoms in new trajectories (encode, evaluate)
MODEL_SELECT_HELP = (
    "mdtraj selection of the model's atoms (default: the selection the model was trained "
    "with, when the file has more atoms)."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON result record on stdout.")
DebugOption = typer.Option(False, "--debug", help="Show the traceback of an error.")
ModelOption = typer.Option(
    Path("model.h5"), "--model", "-m", help="Model file from `vaetraj train`."
)
