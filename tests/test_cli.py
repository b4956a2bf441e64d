"""The command line: ``python -m pipeline <job>``, the ``jobs/*.py`` scripts, ``--help``, docs/config.md."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import JOBS, summary

REPO = Path(__file__).resolve().parents[1]


def test_every_job_has_a_module_a_script_and_a_registry_entry():
    modules = {p.stem for p in (REPO / "pipeline" / "cli").glob("*.py") if not p.stem.startswith("_")}
    scripts = {p.stem for p in (REPO / "jobs").glob("*.py")}
    assert len(set(JOBS)) == len(JOBS)
    assert modules == set(JOBS) == scripts


@pytest.mark.parametrize("job", JOBS)
def test_job_scripts_only_call_the_package(job):
    tree = ast.parse((REPO / "jobs" / f"{job}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {f"pipeline.cli.{job}", "pipeline.runtime"}
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)]


def test_no_sys_path_edits():
    edits = [f"{p.relative_to(REPO)}" for folder in ("jobs", "pipeline") for p in (REPO / folder).rglob("*.py")
             if "sys.path.insert" in p.read_text()]
    assert not edits


@pytest.mark.parametrize("job", JOBS)
def test_help_describes_the_job(job, monkeypatch, capsys):
    module = importlib.import_module(f"pipeline.cli.{job}")
    monkeypatch.setattr(sys, "argv", [f"python -m pipeline {job}", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert summary(job) and summary(job) in " ".join(shown.split())
    assert module.__doc__.strip().splitlines()[1] == ""  # a summary line, then the details


def test_module_and_script_run_the_same_job_without_an_install():
    """``python -m pipeline`` lists the jobs; the script and the sub-command print the same help."""
    listing = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0 and all(job in listing.stdout for job in JOBS)
    by_module = subprocess.run([sys.executable, "-m", "pipeline", "search", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    by_script = subprocess.run([sys.executable, "jobs/search.py", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=120)
    assert by_module.returncode == by_script.returncode == 0, by_module.stderr + by_script.stderr
    assert by_module.stdout.split("\n\n", 1)[1] == by_script.stdout.split("\n\n", 1)[1]
    unknown = subprocess.run([sys.executable, "-m", "pipeline", "serch"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown job 'serch'" in unknown.stderr


def test_docs_config_md_is_the_generated_reference():
    from pipeline.cli.config_reference import page

    assert (REPO / "docs" / "config.md").read_text() == page(), "regenerate it: python jobs/config_reference.py"


def test_nothing_in_the_library_imports_the_command_line():
    importers = []
    for path in (REPO / "pipeline").rglob("*.py"):
        if "cli" in path.relative_to(REPO / "pipeline").parts[:1] or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "pipeline.cli" or name.startswith("pipeline.cli.") for name in names):
                importers.append(str(path.relative_to(REPO)))
    assert not importers
