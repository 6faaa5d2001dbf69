"""Options every command has."""

from pathlib import Path

import typer

OverwriteOption = typer.Option(False, "--overwrite", help="Replace an existing output.")
JsonOption = typer.Option(False, "--json", help="Print one JSON result record on stdout.")
DebugOption = typer.Option(False, "--debug", help="Show the traceback of an error.")
ModelOption = typer.Option(
    Path("model.h5"), "--model", "-m", help="Model file from `vaetraj train`."
)
