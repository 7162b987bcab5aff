"""sensorcharts.metrics: Prometheus' text format, and files left alone when they would say the same."""

from __future__ import annotations

from sensorcharts import metrics


def test_a_gauge_per_sensor_is_one_line_per_sensor_in_prometheus_text_format():
    gauge = ("x", "gauge", "Help.", metrics.Labelled("sensor", {"b": 2, "a": 1.5, 'q"\\\n': 0}))
    assert metrics.exposition([gauge]) == (
        "# HELP sensor_charts_x Help.\n# TYPE sensor_charts_x gauge\n"
        'sensor_charts_x{sensor="a"} 1.5\nsensor_charts_x{sensor="b"} 2\nsensor_charts_x{sensor="q\\"\\\\\\n"} 0\n'
    )


def test_if_changed_leaves_a_file_that_says_the_same_alone_and_replaces_one_it_cannot_read(tmp_path):
    path = tmp_path / "m.prom"
    gauge = [("x", "gauge", "Help.", 1)]
    metrics.write(path, gauge)
    first = path.stat()
    metrics.write(path, gauge, if_changed=True)
    assert path.stat().st_ino == first.st_ino  # not replaced
    metrics.write(path, [("x", "gauge", "Help.", 2)], if_changed=True)
    assert path.read_text().endswith("sensor_charts_x 2\n")
    path.write_bytes(b"\xff\xfe")  # not UTF-8: written anew, not an error
    metrics.write(path, gauge, if_changed=True)
    assert path.read_text() == metrics.exposition(gauge)
