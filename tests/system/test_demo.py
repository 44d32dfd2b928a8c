"""``xgw demo`` as a newcomer runs it: its own broker, worker and agencies, a JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def test_demo_runs_end_to_end_and_reports(tmp_path: Path) -> None:
    """A short demo starts everything itself, plays the life events, ends with a JSON summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGW_")}
    env["XGW_PKI_DIR"] = str(tmp_path / "pki")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--duration", "4", "--rate", "60", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "published",
        "delivered",
        "rejected",
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "metrics_url",
    ):
        assert key in summary
    assert summary["ok"] is True
    assert summary["published"] == 240
    assert summary["receipts"] == summary["published"]
    assert summary["accepted"] + sum(summary["rejected"].values()) == summary["published"]
    assert summary["delivered_by_agency"]["health"] == summary["accepted"]
    # One bad record in twenty, cycling through the forger's reasons in order.
    assert {"no_recipients", "record_too_large", "malformed_envelope"} <= set(summary["rejected"])
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert summary["metrics_url"].startswith("http://127.0.0.1:")
    # Where the trail is, and a resident to ask it about: `xgw audit subject` finds them.
    assert summary["audit_store"] == "sqlite:///var/audit/audit.db"
    subject = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "gateway",
            "audit",
            "subject",
            summary["sample_personal_id"],
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert subject.returncode == 0, subject.stderr
    assert json.loads(subject.stdout), "the sample resident's data went nowhere"
    assert (tmp_path / "pki" / "ca" / "root.crt.pem").exists()
    assert list((tmp_path / "pki" / "certs").glob("police.*.crt.pem"))
    check_life_events(summary)


def check_life_events(summary: dict[str, Any]) -> None:
    """Each story played completely, its requests answered, its deliveries as the policy says."""
    life = summary["life_events"]
    stories = life["stories"]
    assert set(stories) == {"birth", "death", "land_transfer", "school_admission"}
    for story, plays in stories.items():
        assert plays["played"] == 3, story
        assert plays["complete"] == plays["played"], story
        assert plays["deliveries"] == plays["expected_deliveries"], story
        assert plays["answered"] == plays["requests"], story
        assert plays["timed_out"] == 0, story
    assert stories["birth"]["outcomes"] == {"published": 3}
    assert stories["death"]["outcomes"] == {"published": 3}
    assert stories["land_transfer"]["outcomes"] == {"transferred": 3}
    assert stories["school_admission"]["outcomes"] == {"enrolled": 3}
    assert stories["land_transfer"]["requests"] == stories["school_admission"]["requests"] == 3
    # A response goes back to the asker only, so its recipient counts include one per request.
    assert stories["land_transfer"]["deliveries"]["land"] >= 3
    assert stories["school_admission"]["deliveries"]["education"] >= 3
    recipients = {agency for plays in stories.values() for agency in plays["deliveries"]}
    assert recipients == {"police", "health", "education", "land"}
    assert life["records"] > 0
    assert life["receipts"] == life["records"]
    assert life["rejected"] == {}
    assert life["timeout_receipts"] == 0
    assert life["ok"] is True
    # The bulk look-up played once on purpose: each request and its timeout are audited, and
    # the monitor raised bulk_lookup for education, its top requester, and nothing else.
    assert summary["bulk_lookups"] == 120
    assert summary["audit_entries"] == (
        summary["published"] + life["records"] + 2 * summary["bulk_lookups"]
    )
    alerts = {(a["kind"], a["agency"]) for a in summary["monitor_alerts"]}
    assert alerts == {("bulk_lookup", "education")}
    tops = summary["monitor_top_requesters"]  # a window may have just turned over: either
    assert "education" in {ranked[0]["agency"] for ranked in tops.values() if ranked}
