"""Every configuration key is explained: in config/README.md (each schema key) and in config/config.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
README = (REPO / "config" / "README.md").read_text()
CONFIG = (REPO / "config" / "config.yaml").read_text()
PLACEHOLDER = "<sensor>"  # how config/README.md names the keys of a mapping with free keys (sensor types)


def schema_keys(schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every key the schema defines: ``database.columns.time``, ``sensors.<sensor>.unit``."""
    keys = []
    for name, sub in schema.get("properties", {}).items():
        keys.append(prefix + name)
        keys += schema_keys(sub, f"{prefix}{name}.")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        keys += schema_keys(extra, f"{prefix}{PLACEHOLDER}.")
    return keys


def documented_keys() -> set[str]:
    """Keys named in the first column of config/README.md's tables."""
    return set(re.findall(r"^\| `([^`]+)` \|", README, re.M))


def test_every_schema_key_is_explained_in_config_readme():
    keys = schema_keys(SCHEMA)
    assert "database.columns.time" in keys and "sensors.<sensor>.display_name" in keys  # the walk itself
    missing = [k for k in keys if k not in documented_keys()]
    assert not missing, f"config/README.md does not explain: {', '.join(missing)}"


def test_config_readme_explains_no_key_the_schema_lacks():
    stale = sorted(documented_keys() - set(schema_keys(SCHEMA)))
    assert not stale, f"config/README.md explains keys the schema does not have: {', '.join(stale)}"


def commented_keys(text: str) -> tuple[list[str], set[str]]:
    """Every key path of a YAML file (sensor names as ``<sensor>``) and those that carry a comment.

    A key carries a comment when it has one at the end of its line or in the comment lines right above it,
    or when a comment above one of its parents names it (``out_of_range`` explained above ``sensors``). A
    comment above a key with a value also covers the keys with values right after it (``start`` and ``end``
    under one comment), up to a blank line. A sensor type (a free key under ``sensors``) is explained by the
    comment on ``sensors``.
    """
    keys, commented = [], set()
    stack: list[tuple[int, str, str]] = []  # (indent, path, comment above)
    comment: list[str] = []
    run = ""  # the comment above the current run of keys with values
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if stripped:
                comment.append(stripped)
            else:
                comment, run = [], ""
            continue
        match = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line)
        if not match:
            continue
        indent, name, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        free = parent == "sensors"
        path = f"{parent}.{PLACEHOLDER if free else name}" if parent else name
        above = " ".join(comment)
        value = rest.split("#", 1)[0].strip()
        run = (above or run) if value else ""
        own = bool(above) or bool(value and run) or re.search(r"\s#\s*\S", rest) is not None
        named_by_parent = any(re.search(rf"\b{re.escape(name)}\b", c) for _, _, c in stack)
        if own or named_by_parent or (free and stack[-1][2]):
            commented.add(path)
        keys.append(path)
        stack.append((indent, path, above))
        comment = []
    return keys, commented


def test_every_key_of_config_yaml_has_a_comment():
    keys, commented = commented_keys(CONFIG)
    assert "database.columns.time" in keys
    missing = sorted({k for k in keys if k not in commented})
    assert not missing, f"config/config.yaml has no comment on: {', '.join(missing)}"
