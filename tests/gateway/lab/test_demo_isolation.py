"""One demo per folder; a demo on a user's broker keeps to topics and a store of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.lab import demo
from gateway.settings import load_settings


def test_a_second_demo_in_the_same_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "var" / "demo.lock"
    busy = rf"another xgw demo \(pid {os.getpid()}\)"
    with demo._only_demo(lock), pytest.raises(ConfigError, match=busy), demo._only_demo(lock):
        pass
    with demo._only_demo(lock):  # released when the first one ended
        pass


def test_the_cli_refuses_in_one_line_before_starting_anything(tmp_path: Path) -> None:
    with demo._only_demo(tmp_path / "var" / "demo.lock"):
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "demo", "--duration", "1"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("XGW_")},
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"xgw: error: another xgw demo (pid {os.getpid()}) is running in this folder "
        "(var/demo.lock); wait for it or run the demo from another folder"
    ]


def test_a_demo_on_a_given_broker_joins_no_group_and_no_trail_of_the_exchange_there() -> None:
    live = load_settings(bootstrap_servers="kafka:9092")
    own = demo.isolated(live, "20261206T090000")
    assert own.topics.ingress("police") == "demo-20261206T090000.ingress.police"
    assert own.app_id != live.app_id
    assert own.audit_group != live.audit_group
    assert own.audit_store == "sqlite:///var/demo/20261206T090000/audit.db"
    assert own.bootstrap_servers == live.bootstrap_servers
