"""The documentation site builds with warnings as errors, and covers every command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(DOCS / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    train = (tmp_path / "site" / "commands" / "train" / "index.html").read_text()
    assert "--features" in train and "--kl-warmup" in train  # the generated option table
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "train_features" in api and "load_model" in api
    assert (tmp_path / "site" / "img" / "ramachandran_latent.png").exists()


def test_every_command_has_a_page_with_its_option_table():
    from vaetraj.cli.app import app

    command = typer.main.get_command(app)
    names = [n for n in command.commands if n != "simulate"] + ["simulate polymer"]
    config = (DOCS / "mkdocs.yml").read_text()
    for name in names:
        page = DOCS / "pages" / "commands" / f"{name.split()[0]}.md"
        assert f"<!-- options: {name} -->" in page.read_text(), page
        assert f"commands/{name.split()[0]}.md" in config, name


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs|examples)/[^)#]+)", readme)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link


_COMMAND = re.compile(r"python tests/benchmarks/|`vaetraj |vaetraj [a-z]+ |examples/|tests/test_")


def _tables(lines: list[str]):
    """(first line, table text, the text around it) of every markdown table."""
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            around = lines[max(0, i - 15) : j + 8]
            yield i, "\n".join(lines[i:j]), "\n".join(around), lines[i - 1] if i else ""
            i = j
        else:
            i += 1


def test_every_table_of_figures_names_the_command_that_measured_it():
    """Issue 31: figures quoted under "default settings" were measured with others.
    A table of measured figures in the docs has the command (a benchmark, an example,
    a vaetraj command line or a test) within a few lines of it; a table of definitions
    is marked as such."""
    missing = []
    for page in sorted((ROOT / "docs" / "pages").rglob("*.md")):
        lines = page.read_text().splitlines()
        for first, table, around, before in _tables(lines):
            if "definitions, not measurements" in before:
                continue
            if re.search(r"\d\.\d|\d%", table) and not _COMMAND.search(around):
                missing.append(f"{page.relative_to(ROOT)}:{first + 1}")
    assert missing == []
