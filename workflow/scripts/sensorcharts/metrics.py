"""Publishing counters in Prometheus' text format, for node_exporter's textfile collector.

node_exporter reads every ``*.prom`` file of its ``--collector.textfile.directory`` at each scrape; a file must
appear whole, so it is written under a temporary name and renamed (files whose names start with a dot are not
read). Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4).
"""

from __future__ import annotations

from . import atomic

PREFIX = "sensor_charts_"


def exposition(metrics: list[tuple[str, str, str, float | int | None]]) -> str:
    """``metrics``: (name without prefix, type ``counter``/``gauge``, help text, value); None values are left
    out (a gauge that does not apply, e.g. the budget when it is unlimited)."""
    lines = []
    for name, kind, text, value in metrics:
        if value is None:
            continue
        full = PREFIX + name
        lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}", f"{full} {_number(value)}"]
    return "\n".join(lines) + "\n"


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write(path, metrics) -> None:
    atomic.write_text(path, exposition(metrics))
