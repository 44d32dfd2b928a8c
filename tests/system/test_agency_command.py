"""``xgw agency``: runs against an exchange and stops cleanly; fails loudly when it cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from gateway.lab.broker import EmbeddedBroker
from gateway.settings import settings_env
from tests.conftest import Pki
from tests.support.harness import exchange_settings, running_exchange


def _agency(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway", "agency", "police", *args],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("XGW_")}, **env},
        timeout=120,
        check=False,
    )


def test_an_agency_that_never_reaches_its_broker_says_why_and_exits_non_zero(pki: Pki) -> None:
    result = _agency(
        {"XGW_BOOTSTRAP_SERVERS": "127.0.0.1:1", "XGW_PKI_DIR": str(pki.directory)},
        "--duration",
        "5",
    )
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "xgw: error: agency police stopped: cannot reach Kafka at 127.0.0.1:1 "
        "(XGW_BOOTSTRAP_SERVERS)"
    ), last
    assert "Traceback" not in result.stderr


async def test_an_agency_runs_against_an_exchange_and_ends_with_its_duration(
    broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"ag{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path):
        env = settings_env(settings.model_copy(update={"log_format": "json"}))
        result = _agency(env, "--duration", "4", "--rate", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    receipts = [e for e in events if e.get("event") == "receipt"]
    assert receipts, result.stderr[-2000:]  # what it published was decided by the worker
    assert {e["status"] for e in receipts} <= {"accepted", "rejected"}
    assert not [e for e in events if e.get("event") == "publish failing"]
