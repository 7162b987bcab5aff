"""sensorcharts.codedigest: a rule's `code` param changes exactly when code its script runs changes."""

from __future__ import annotations

import ast
import re
import shutil
from modulefinder import ModuleFinder
from pathlib import Path

import pytest

from sensorcharts.codedigest import PACKAGE, RUNNER, CodeDigests, import_statements, imported_names

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
RULE_SCRIPTS = sorted(p.stem for p in SCRIPTS.glob("*.py"))
MODULES = sorted(p.stem for p in (SCRIPTS / PACKAGE).glob("*.py"))


def digests(folder: Path, scripts) -> dict[str, str]:
    codes = CodeDigests(folder)  # a new instance: each one reads the files once
    return {script: codes.digest(script) for script in scripts}


def modulefinder_reaches(folder: Path, script: str) -> set[str]:
    """The package modules Python's own ``modulefinder`` finds the script importing (compiled code, imports
    inside functions included), without entering the runner: an oracle independent of codedigest."""
    finder = ModuleFinder(path=[str(folder)], excludes=sorted(RUNNER))
    finder.run_script(str(folder / f"{script}.py"))
    return {name for name in finder.modules if name.startswith(PACKAGE + ".")}


@pytest.fixture
def scripts_copy(tmp_path):
    copy = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize("module", MODULES)
def test_a_change_in_a_module_changes_exactly_the_scripts_that_import_it(scripts_copy, module):
    before = digests(scripts_copy, RULE_SCRIPTS)
    path = scripts_copy / PACKAGE / f"{module}.py"
    path.write_text(path.read_text() + "\n# a comment is a change of the file\n")
    after = digests(scripts_copy, RULE_SCRIPTS)
    changed = {script for script in RULE_SCRIPTS if after[script] != before[script]}
    expected = {script for script in RULE_SCRIPTS
                if f"{PACKAGE}.{module}" in modulefinder_reaches(scripts_copy, script)}
    if module == "__init__":  # every import of a package module runs the package's __init__
        expected = {script for script in RULE_SCRIPTS if modulefinder_reaches(scripts_copy, script)}
    assert changed == expected


def test_the_modules_the_issue_found_missing_from_hand_kept_lists_are_covered():
    codes = CodeDigests(SCRIPTS)
    # render_cumulative uses tables through charts; prepare_report uses the receipts' reader (and cid) through report.
    assert "sensorcharts/tables.py" in codes.files("render_cumulative")
    assert {"sensorcharts/uploads.py", "sensorcharts/cid.py"} <= set(codes.files("prepare_report"))
    # The job runner is in no digest, and neither is a module only the runner imports.
    for script in RULE_SCRIPTS:
        assert not {f"{m.replace('.', '/')}.py" for m in RUNNER} & set(codes.files(script)), script


def test_a_comment_in_the_job_runner_changes_no_digest(scripts_copy):
    before = digests(scripts_copy, RULE_SCRIPTS)
    for runner in ("jobs", "warm"):
        path = scripts_copy / PACKAGE / f"{runner}.py"
        path.write_text("# how a job runs, not what it writes\n" + path.read_text())
    assert digests(scripts_copy, RULE_SCRIPTS) == before


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_every_form_of_import_is_followed(tmp_path):
    write(tmp_path, {
        "sensorcharts/__init__.py": "",
        "sensorcharts/low.py": "X = 1\n",
        "sensorcharts/middle.py": "def f():\n    from . import low\n    return low.X\n",  # relative, in a function
        "sensorcharts/top.py": "from .middle import f\n",
        "sensorcharts/aliased.py": "",
        "sensorcharts/listed.py": "",
        "sensorcharts/sub/__init__.py": "from ..low import X\n",  # two levels up
        "sensorcharts/sub/leaf.py": "",
        "sensorcharts/jobs.py": "from sensorcharts import runner_only\n",
        "sensorcharts/runner_only.py": "",
        "sensorcharts/unused.py": "",
        "script.py": (
            "from sensorcharts.jobs import log\n"
            "import sensorcharts.aliased as a\n"
            "def main(snakemake):\n"
            "    from sensorcharts import top, sub\n"
            "    from sensorcharts.sub import leaf\n"
            "    from sensorcharts import (\n        listed,\n    )\n"
        ),
    })
    assert CodeDigests(tmp_path).files("script") == [
        "script.py",
        "sensorcharts/__init__.py",
        "sensorcharts/aliased.py",
        "sensorcharts/listed.py",
        "sensorcharts/low.py",
        "sensorcharts/middle.py",
        "sensorcharts/sub/__init__.py",
        "sensorcharts/sub/leaf.py",
        "sensorcharts/top.py",
    ]


def test_a_module_the_runner_and_a_script_both_import_stays_in_the_digest(tmp_path):
    write(tmp_path, {"sensorcharts/__init__.py": "", "sensorcharts/atomic.py": "",
                     "sensorcharts/jobs.py": "from . import atomic\n",
                     "script.py": "from sensorcharts import atomic\n"})
    assert CodeDigests(tmp_path).files("script") == ["script.py", "sensorcharts/__init__.py", "sensorcharts/atomic.py"]


def test_an_unknown_script_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no workflow script nothing.py"):
        CodeDigests(tmp_path).digest("nothing")


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")) + sorted((SCRIPTS / PACKAGE).glob("*.py")),
                         ids=lambda p: p.name)
def test_the_quick_scan_finds_every_import_a_full_parse_finds(path):
    """codedigest parses only the statements its regular expression finds; a full parse finds no more."""
    source = path.read_text()

    def ours(node) -> bool:
        if isinstance(node, ast.ImportFrom):
            return bool(node.level) or (node.module or "").split(".")[0] == PACKAGE
        return isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names)

    full = {ast.dump(n) for n in ast.walk(ast.parse(source)) if ours(n)}
    quick = {ast.dump(n) for n in import_statements(source)}
    assert full <= quick


def test_text_that_only_looks_like_an_import_adds_at_most_a_module():
    source = '"""Docs.\n\nfrom sensorcharts import tables\nfrom . import (unbalanced\n"""\nimport os\n'
    assert imported_names(source, "sensorcharts.x") == {"sensorcharts", "sensorcharts.tables"}


@pytest.mark.parametrize("module", [m for m in MODULES if f"{PACKAGE}.{m}" not in RUNNER])
def test_no_module_outside_the_runner_imports_by_name_at_run_time(module):
    """Such an import is invisible to the walk, so its module would be missing from the digests."""
    source = (SCRIPTS / PACKAGE / f"{module}.py").read_text()
    assert not re.search(r"\bimport_module\(|\b__import__\(", source)
