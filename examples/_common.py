"""What the examples share: where the data are, running the CLI, writing results."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent


def shared_data() -> Path | None:
    """The project's shared data folder (../shared/data beside the checkout, or
    $VAETRAJ_SHARED_DATA), or None when it is not there."""
    if os.environ.get("VAETRAJ_SHARED_DATA"):
        folder = Path(os.environ["VAETRAJ_SHARED_DATA"])
    else:
        folder = EXAMPLES.parents[1] / "shared" / "data"
    return folder if folder.is_dir() else None


def parser(description: str, output: str, epochs: int) -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("-o", "--output", type=Path, default=Path(output), help="output folder")
    parse.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    parse.add_argument("--seed", type=int, default=0)
    return parse


def fresh_folder(folder: Path) -> Path:
    """An empty output folder (an old run's files are replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def vaetraj(*args: object, cwd: Path) -> dict:
    """Run one `vaetraj` command line with --json in folder `cwd`, and return its JSON
    record (or exit with its error line).

    The command runs in this process through the CLI's own entry point, exactly as the
    shell would run it, but JAX starts and compiles once for all the commands instead
    of once per command (`VAETRAJ_EXAMPLES_SUBPROCESS=1` runs each in its own process).
    """
    words = [*map(str, args), "--json"]
    print("$ vaetraj " + " ".join(map(str, args)), flush=True)
    if os.environ.get("VAETRAJ_EXAMPLES_SUBPROCESS"):
        done = subprocess.run(
            [sys.executable, "-m", "vaetraj", *words], cwd=cwd, capture_output=True, text=True
        )
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        from typer.testing import CliRunner

        from vaetraj.cli.app import app

        here = Path.cwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, words)
        finally:
            os.chdir(here)
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    if code != 0:
        sys.exit(f"vaetraj {args[0]} failed ({code}): {stderr.strip()}")
    return json.loads(stdout)


def write_results(folder: Path, results: dict) -> dict:
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, value in results.items():
        print(f"  {name}: {value}")
    return results
