"""What a rule's code is: its workflow script and every package module the script imports, as one digest.

Each rule passes ``code_digest("<script>")`` as a param, so a change in the code that makes a rule's outputs
redoes that rule's jobs and no others (the workflow profile leaves Snakemake's own "code" trigger out: it
compares the script's mtime only, missing the package and firing on every fresh clone). The modules are
found by reading the source, not by importing it: ``import`` and ``from … import`` statements anywhere in a
file (inside functions too), absolute or relative, followed from module to module through the package.

The job runner (``RUNNER``) is left out: it decides how a job runs, in which process, with which log, and
never what the job writes, so a change there must not redo a backfill. A module that only the runner
imports is left out with it, since the walk never enters the runner. A module that imports another by
name at run time (``importlib``) hides that import from the walk; tests/test_codedigest.py checks that only
the runner does.

Standard library only, and cheap: Snakemake builds the digests at every start-up (cron included), so one
``CodeDigests`` reads and parses each file once per run however many rules share it.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re

PACKAGE = "sensorcharts"
# Modules that run jobs rather than compute their outputs: the rules' side (jobs), the job's process
# (jobprocess) and the warm server's two ends (warm, warmserver).
RUNNER = frozenset(f"{PACKAGE}.{m}" for m in ("jobs", "jobprocess", "warm", "warmserver"))


# Where an import statement that may name a package module begins: at the start of a line (ruff's E701 and
# E702 keep statements off lines shared with others), ``from .``, ``from sensorcharts`` or ``import …sensorcharts``.
_IMPORT_START = re.compile(rf"^[ \t]*(?:from[ \t]+(?:\.|{PACKAGE}\b)|import[ \t][^#\n]*\b{PACKAGE}\b)", re.M)


def import_statements(source: str) -> list[ast.stmt]:
    """The import statements of ``source`` that may name a package module, parsed one by one.

    Parsing only these (a regular expression finds where they begin) costs a thirtieth of parsing the whole
    file. A line inside a string that looks like such an import is parsed too: at worst a module is
    included that is not imported, never the other way round; text that is no statement is skipped.
    """
    statements = []
    for match in _IMPORT_START.finditer(source):
        start = match.start()
        end = start
        while True:  # the logical line: through a parenthesised list or backslash continuations
            newline = source.find("\n", end)
            end = len(source) if newline < 0 else newline + 1
            text = source[start:end]
            if text.count("(") <= text.count(")") and not text.rstrip().endswith("\\") or newline < 0:
                break
        try:
            statements.extend(ast.parse(source[start:end].lstrip(" \t")).body)
        except SyntaxError:
            continue
    return statements


def imported_names(source: str, module: str | None = None, is_package: bool = False) -> set[str]:
    """Dotted names of everything ``source`` imports that may be a module of the package.

    ``module`` is the importing module's dotted name (None for a workflow script), which relative imports
    resolve against. ``from sensorcharts import report`` yields ``sensorcharts`` and ``sensorcharts.report``
    (the caller keeps the names that are modules); parent packages are included, since importing a module
    runs its package's ``__init__``.
    """
    here = (module if is_package else module.rpartition(".")[0]) if module else ""
    names: set[str] = set()
    for node in import_statements(source):
        if isinstance(node, ast.Import):
            bases, members = [alias.name for alias in node.names], []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".") if here else []
                if not parts or node.level - 1 >= len(parts):
                    continue  # a relative import above the package: not ours
                anchor = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            bases, members = [base], [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in bases + members:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                parts = name.split(".")
                names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


class CodeDigests:
    """Digests of the workflow scripts in folder ``scripts`` (which also holds the package), cached.

    One instance per Snakemake run: each file is read and searched once, so later edits are not seen.
    Paths are plain strings: pathlib's bookkeeping cost more than the reading.
    """

    def __init__(self, scripts: str | os.PathLike):
        self.scripts = os.fspath(scripts)
        self._bytes: dict[str, bytes] = {}
        self._imports: dict[str, set[str]] = {}
        self._paths: dict[str, str | None] = {}
        self._digests: dict[str, str] = {}

    def module_path(self, name: str) -> str | None:
        """The file of package module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``), if any."""
        if name not in self._paths:
            base = os.path.join(self.scripts, *name.split("."))
            candidates = (base + ".py", os.path.join(base, "__init__.py"))
            self._paths[name] = next((path for path in candidates if os.path.isfile(path)), None)
        return self._paths[name]

    def files(self, script: str) -> list[str]:
        """Paths, relative to ``scripts`` and sorted, of the script and of every package module it imports,
        directly or through other modules, the runner's excepted."""
        start = f"{script}.py"
        if not os.path.isfile(os.path.join(self.scripts, start)):
            raise FileNotFoundError(f"no workflow script {script}.py in {self.scripts}")
        seen = {start}
        pending: list[tuple[str, str | None]] = [(start, None)]
        while pending:
            path, module = pending.pop()
            for name in self._imported(path, module):
                if name in RUNNER:
                    continue
                found = self.module_path(name)
                if found is not None:
                    found = os.path.relpath(found, self.scripts)
                    if found not in seen:
                        seen.add(found)
                        pending.append((found, name))
        return sorted(seen)

    def digest(self, script: str) -> str:
        """16 hex digits of SHA-256 over the relative paths and contents of :meth:`files`."""
        if script not in self._digests:
            h = hashlib.sha256()
            for path in self.files(script):
                h.update(path.replace(os.sep, "/").encode() + b"\0" + self._read(path) + b"\0")
            self._digests[script] = h.hexdigest()[:16]
        return self._digests[script]

    def _read(self, path: str) -> bytes:
        if path not in self._bytes:
            with open(os.path.join(self.scripts, path), "rb") as f:
                self._bytes[path] = f.read()
        return self._bytes[path]

    def _imported(self, path: str, module: str | None) -> set[str]:
        if path not in self._imports:
            source = self._read(path).decode("utf-8")
            self._imports[path] = imported_names(source, module, os.path.basename(path) == "__init__.py")
        return self._imports[path]
