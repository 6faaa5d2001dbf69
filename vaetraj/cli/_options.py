"""Options every command has."""

import typer

OverwriteOption = typer.Option(False, "--overwrite", help="Replace an existing output.")
JsonOption = typer.Option(False, "--json", help="Print one JSON result record on stdout.")
DebugOption = typer.Option(False, "--debug", help="Show the traceback of an error.")
