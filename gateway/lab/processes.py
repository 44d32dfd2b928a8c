"""Child processes of the lab: one :class:`ChildProcess`, and the gateway worker built on it.

:class:`ChildProcess` is the one place that starts a child with its output in a log file and
stops it (SIGTERM, then SIGKILL); :class:`WorkerProcess` (``python -m gateway worker`` for the
demo and tests), :class:`MonitorProcess` (``xgw monitor``),
:class:`~gateway.lab.broker.EmbeddedBroker` and the bench's
:class:`~gateway.lab.forwarder.Forwarder` each hold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import XgwError
from gateway.settings import Settings, settings_env

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Between fork and exec: have the kernel SIGTERM this child when its parent dies.

    Children run in their own session (a terminal's Ctrl-C reaches only the parent, which stops
    them in order), so without this a SIGKILLed demo or test run would leave them orphaned.
    The kernel ties it to the thread that started the child: start children from a thread
    that lives as long as they do (the event loop's, or a pool thread).
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


class ChildProcess:
    """One child process whose output goes to a log file (a temporary one without a path).

    The log stays open while the child runs, so :meth:`tail` can quote it in an error.
    """

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited."""
        return self._process.poll() if self._process else None

    @property
    def stdout(self) -> IO[bytes] | None:
        """The child's standard output when started with ``stdout_pipe``."""
        return self._process.stdout if self._process else None

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout_pipe: bool = False,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """Launch ``argv``; stderr (and stdout unless ``stdout_pipe``) goes to the log."""
        if self.log_path is None:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the child's lifetime
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a+b")  # noqa: SIM115 - ditto
        self._process = subprocess.Popen(  # noqa: S603 - callers pass fixed programs and arguments
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log if stdout_pipe else subprocess.STDOUT,
            env=dict(env),
            preexec_fn=preexec_fn,  # noqa: PLW1509 - callers pass only prctl, no locks taken
            # Its own session: the terminal's Ctrl-C goes to the parent alone, which stops its
            # children in order (clients, worker, audit writer, then the broker they need).
            start_new_session=True,
        )

    def stop(self, timeout: float) -> int | None:
        """SIGTERM the child and wait; SIGKILL if it does not stop in time. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self._release(process)
        self._close_log()
        return None if process is None else process.returncode

    def kill(self) -> None:
        """SIGKILL the child and wait for it (fault tests)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            self._release(process)
        self._close_log()

    def tail(self, chars: int = 500) -> str:
        """The end of the log on one line, for an error message; empty once stopped."""
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            self._log.flush()
            self._log.seek(0, os.SEEK_END)
            self._log.seek(max(0, self._log.tell() - chars))
            return self._log.read().decode("utf-8", "replace").strip().replace("\n", " | ")
        return ""

    @staticmethod
    def _release(process: subprocess.Popen[bytes]) -> None:
        if process.stdout is not None:
            process.stdout.close()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _start_xgw(child: ChildProcess, command: Sequence[str], settings: Settings) -> float:
    """Launch ``python -m gateway <command>`` with ``settings``; the monotonic start time."""
    started_at = time.monotonic()
    child.start(
        [sys.executable, "-m", "gateway", *command],
        {**os.environ, **settings_env(settings)},
        preexec_fn=die_with_parent,
    )
    return started_at


async def _wait_for_sample(
    child: ChildProcess, metrics_url: str, sample: str, what: str, limit_s: float
) -> None:
    """Until ``sample`` of ``metrics_url`` is positive; an error if the child dies or is late."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not child.running:
            raise XgwError(f"{what} exited during start-up; see {child.log_path}")
        try:
            samples = await asyncio.to_thread(scrape, metrics_url, 1.0)
        except (urllib.error.URLError, OSError):
            samples = {}
        if samples.get(sample, 0) > 0:
            return
        await asyncio.sleep(0.1)
    raise XgwError(f"{what} not ready after {limit_s:g}s; see {child.log_path}")


class WorkerProcess:
    """Starts, watches and stops one ``xgw`` service process (a worker by default)."""

    def __init__(
        self, settings: Settings, log_path: Path, command: tuple[str, ...] = ("worker",)
    ) -> None:
        self.metrics_port = settings.metrics_port or free_port(settings.metrics_host)
        self.settings = settings.model_copy(update={"metrics_port": self.metrics_port})
        self.log_path = log_path
        self.command = command
        self._child = ChildProcess(log_path)
        self.started_at = 0.0

    @property
    def metrics_url(self) -> str:
        """The worker's /metrics URL."""
        return f"http://{self.settings.metrics_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._child.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._child.running

    def start(self) -> None:
        """Launch the worker; its log goes to ``log_path``."""
        self.started_at = _start_xgw(self._child, self.command, self.settings)

    async def wait_ready(self, limit_s: float = 60.0) -> float:
        """Wait until the worker has ingress partitions assigned; return seconds since start."""
        await _wait_for_sample(
            self._child, self.metrics_url, "xgw_assigned_partitions{}", "gateway worker", limit_s
        )
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """SIGKILL the worker (fault tests)."""
        self._child.kill()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the worker and wait; SIGKILL if it does not stop in time."""
        return self._child.stop(timeout)


class MonitorProcess:
    """Starts, watches and stops one ``xgw monitor`` process (its web view on its own port)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = settings.monitor_port or free_port(settings.metrics_host)
        self.settings = settings.model_copy(update={"monitor_port": self.port})
        self.log_path = log_path
        self._child = ChildProcess(log_path)
        self.started_at = 0.0

    @property
    def url(self) -> str:
        """The monitor's JSON view."""
        return f"http://{self.settings.metrics_host}:{self.port}/monitor"

    @property
    def metrics_url(self) -> str:
        """The monitor's /metrics URL."""
        return f"http://{self.settings.metrics_host}:{self.port}/metrics"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._child.running

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._child.pid

    def start(self) -> None:
        """Launch the monitor; its log goes to ``log_path``."""
        self.started_at = _start_xgw(self._child, ("monitor",), self.settings)

    async def wait_ready(self, limit_s: float = 60.0) -> float:
        """Wait until the monitor's tables are recovered; return seconds since start."""
        await _wait_for_sample(
            self._child, self.metrics_url, "xgw_monitor_ready{}", "monitor", limit_s
        )
        return time.monotonic() - self.started_at

    async def view(self, path: str = "", limit_s: float = 2.0) -> dict[str, Any]:
        """The monitor's JSON view (``path``: "" or "/counts")."""

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(self.url + path, timeout=limit_s) as response:  # noqa: S310 - our own loopback URL
                return cast(dict[str, Any], json.load(response))

        return await asyncio.to_thread(get)

    def kill(self) -> None:
        """SIGKILL the monitor (fault tests)."""
        self._child.kill()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the monitor and wait; SIGKILL if it does not stop in time."""
        return self._child.stop(timeout)

    def tail(self, chars: int = 2000) -> str:
        """The end of its log."""
        return self._child.tail(chars)
