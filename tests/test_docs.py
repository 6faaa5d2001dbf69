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
