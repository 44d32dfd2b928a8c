"""The demo's summary of the monitor: each alert the demo causes on purpose says so."""

from __future__ import annotations

from gateway.lab import demo


def _summary(alerts: list[dict[str, object]], bulk: int) -> demo.DemoSummary:
    summary = demo.DemoSummary()
    summary.bulk_lookups = bulk
    summary.monitor = {"top_requesters": {}, "alerts": alerts}
    return summary


def _alerts_line(summary: demo.DemoSummary) -> str:
    return dict(demo._monitor_lines(summary))["monitor alerts"]


def test_the_played_bulk_look_up_and_the_vaccinations_refused_by_policy_are_explained() -> None:
    alerts = [
        {"kind": "bulk_lookup", "agency": "education", "count": 51, "threshold": 50.0},
        {"kind": "rejection_spike", "agency": "health", "count": 1.0, "threshold": 1.0},
    ]
    assert _alerts_line(_summary(alerts, 120)) == (
        "bulk_lookup education: 51 (threshold 50.0)\n"
        "rejection_spike health: 1.0 (threshold 1.0)"
        "; the bulk look-up of 120 residents was played on purpose"
        "; health vaccinations: the policy grants them to nobody, on purpose, so all are rejected"
    )


def test_an_alert_the_demo_does_not_cause_on_purpose_is_not_explained_away() -> None:
    alerts = [{"kind": "rejection_spike", "agency": "police", "count": 0.9, "threshold": 0.5}]
    assert _alerts_line(_summary(alerts, 0)) == "rejection_spike police: 0.9 (threshold 0.5)"
    assert _alerts_line(_summary([], 0)) == "none"
