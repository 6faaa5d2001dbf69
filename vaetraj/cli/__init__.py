"""The Typer command line: parses, calls the API, reports. No arithmetic here."""
