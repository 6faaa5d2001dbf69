"""mkdocs hook: `<!-- options: train -->` in a page becomes the table of that command's
options, read from the CLI itself, so the docs can never miss or misstate an option."""

from __future__ import annotations

import re

import typer

MARKER = re.compile(r"<!-- options: ([a-z ]+) -->")


def _command(path: str):
    from vaetraj.cli.app import app

    command = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    return command


def _default(param) -> str:
    value = param.default
    if value is None or getattr(param, "is_flag", False) and value is False or callable(value):
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return f"`{getattr(value, 'value', value)}`"


def _kind(param, context) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    return param.display_type(context).strip("<>").replace("|", " \\| ")


def options_table(path: str) -> str:
    rows = ["| option | value | default | what it does |", "| --- | --- | --- | --- |"]
    command = _command(path)
    context = typer.Context(command)
    for param in command.params:
        if param.param_type_name == "argument":
            name = f"`{param.metavar or param.name.upper()}`"
        elif param.name == "help":
            continue
        else:
            name = ", ".join(f"`{opt}`" for opt in param.opts + param.secondary_opts)
        text = " ".join((getattr(param, "help", None) or "").split()).replace("|", "\\|")
        rows.append(f"| {name} | {_kind(param, context)} | {_default(param)} | {text} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda match: options_table(match.group(1)), markdown)
