"""The metrics registry renders Prometheus' text format exactly: cumulative buckets, escaped
label values, integral numbers without a fraction, +Inf."""

from __future__ import annotations

from federation.observe import DELIVERY, INBOX_ACTIVITY
from server.metrics import Counter, Gauge, Histogram, NodeMetrics, render


def test_a_histogram_renders_cumulative_buckets_its_sum_and_count() -> None:
    histogram = Histogram("took_seconds", "Time taken.", ("route",), (0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(seconds, ("/a",))
    assert render([histogram]).splitlines() == [
        "# HELP took_seconds Time taken.",
        "# TYPE took_seconds histogram",
        'took_seconds_bucket{route="/a",le="0.1"} 2',
        'took_seconds_bucket{route="/a",le="1"} 3',
        'took_seconds_bucket{route="/a",le="+Inf"} 4',
        'took_seconds_sum{route="/a"} 3.65',
        'took_seconds_count{route="/a"} 4',
    ]


def test_label_values_and_help_are_escaped() -> None:
    counter = Counter("odd_total", "A help\\text\nover two lines.", ("name",))
    counter.inc(('say "hi"\\\n',))
    counter.inc(('say "hi"\\\n',), 2)
    assert render([counter]).splitlines() == [
        "# HELP odd_total A help\\\\text\\nover two lines.",
        "# TYPE odd_total counter",
        'odd_total{name="say \\"hi\\"\\\\\\n"} 3',
    ]


def test_gauges_without_labels_and_empty_families_render() -> None:
    text = render([Gauge("up", "Up.").set(1), Counter("none_total", "Nothing yet.")])
    assert text == (
        "# HELP up Up.\n# TYPE up gauge\nup 1\n"
        "# HELP none_total Nothing yet.\n# TYPE none_total counter\n"
    )


def test_federation_events_reach_their_counters() -> None:
    metrics = NodeMetrics()
    metrics.observe(INBOX_ACTIVITY, ("Create", "stored", ""))
    metrics.observe(INBOX_ACTIVITY, ("Create", "stored", ""))
    metrics.observe(DELIVERY, ("delivered",))
    metrics.unit_of_work("write", 0.002)
    text = render(metrics.families())
    assert 'kith_inbox_activities_total{type="Create",outcome="stored",reason=""} 2' in text
    assert 'kith_deliveries_total{outcome="delivered"} 1' in text
    assert 'kith_database_unit_of_work_seconds_count{kind="write"} 1' in text
