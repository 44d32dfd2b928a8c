"""A gateway worker as a child process (``python -m gateway worker``), for the demo and tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import XgwError
from gateway.lab.broker import free_port
from gateway.settings import Settings, settings_env


def scrape(url: str, timeout: float = 2.0) -> dict[str, float]:
    """Read a /metrics endpoint into ``{"name{label=value,...}": value}``."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own http URL
        text = response.read().decode("utf-8")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


class WorkerProcess:
    """Starts, watches and stops one ``xgw`` service process (a worker by default)."""

    def __init__(
        self, settings: Settings, log_path: Path, command: tuple[str, ...] = ("worker",)
    ) -> None:
        self.metrics_port = settings.metrics_port or free_port(settings.metrics_host)
        self.settings = settings.model_copy(update={"metrics_port": self.metrics_port})
        self.log_path = log_path
        self.command = command
        self._process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def metrics_url(self) -> str:
        """The worker's /metrics URL."""
        return f"http://{self.settings.metrics_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Launch the worker; its log goes to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings)}
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our interpreter, our own commands
                [sys.executable, "-m", "gateway", *self.command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def wait_ready(self, limit_s: float = 60.0) -> float:
        """Wait until the worker has ingress partitions assigned; return seconds since start."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise XgwError(f"gateway worker exited during start-up; see {self.log_path}")
            try:
                samples = await asyncio.to_thread(scrape, self.metrics_url, 1.0)
            except (urllib.error.URLError, OSError):
                samples = {}
            if samples.get("xgw_assigned_partitions{}", 0) > 0:
                return time.monotonic() - self.started_at
            await asyncio.sleep(0.1)
        raise XgwError(f"gateway worker not ready after {limit_s:g}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the worker (fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the worker and wait; SIGKILL if it does not stop in time."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
