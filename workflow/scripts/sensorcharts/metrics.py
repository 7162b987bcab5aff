"""Counters and gauges (publishing, runs, readings) in Prometheus' text format, for node_exporter's textfile
collector.

node_exporter reads every ``*.prom`` file of its ``--collector.textfile.directory`` at each scrape; a file must
appear whole, so it is written under a temporary name and renamed (files whose names start with a dot are not
read). Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from . import atomic

PREFIX = "sensor_charts_"


class Labelled(NamedTuple):
    """One value per value of a label, e.g. ``Labelled("sensor", {"temperature": 1.5e9})``."""

    label: str
    values: dict[str, float | int]


def exposition(metrics: list[tuple[str, str, str, float | int | Labelled | None]]) -> str:
    """``metrics``: (name without prefix, type ``counter``/``gauge``, help text, value); None values are left
    out (a gauge that does not apply, e.g. the budget when it is unlimited)."""
    lines = []
    for name, kind, text, value in metrics:
        if value is None:
            continue
        full = PREFIX + name
        lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}"]
        if isinstance(value, Labelled):
            for key, number in sorted(value.values.items()):
                lines.append(f'{full}{{{value.label}="{_escaped(key)}"}} {_number(number)}')
        else:
            lines.append(f"{full} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escaped(label_value: str) -> str:
    # The text format escapes backslash, double quote and line feed in label values.
    return label_value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write(path, metrics, if_changed: bool = False) -> None:
    """Write ``metrics`` to ``path``; with ``if_changed``, leave a file that says the same alone (so a run with
    nothing new changes nothing under results/)."""
    text = exposition(metrics)
    if if_changed:
        try:
            if Path(path).read_bytes() == text.encode():
                return
        except OSError:  # missing or unreadable: written anew
            pass
    atomic.write_text(path, text)
