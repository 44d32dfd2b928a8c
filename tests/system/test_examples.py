"""The README's agency example runs as written against a live exchange."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from gateway.lab.broker import EmbeddedBroker
from gateway.settings import settings_env
from tests.conftest import Pki
from tests.support.harness import exchange_settings, running_exchange

EXAMPLE = Path(__file__).parents[2] / "examples" / "agency_quickstart.py"


async def test_the_agency_quickstart_publishes_and_health_receives_its_fields(
    broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"ex{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("XGW_")}
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(EXAMPLE)],
            capture_output=True,
            text=True,
            env={**env, **settings_env(settings)},
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[1] == "receipt: accepted, delivered to health, education, land"
    assert lines[2].startswith("health received ['")
    assert "for health_insurance" in lines[2]
    assert "'personal_id'" in lines[2]
