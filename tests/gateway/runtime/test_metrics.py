"""The /metrics endpoint: served on the port asked for, and a clear error when it cannot be."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from gateway.errors import ConfigError
from gateway.runtime.metrics import GatewayMetrics, serve_metrics


def test_metrics_are_served_on_a_free_port() -> None:
    server = serve_metrics(GatewayMetrics(["t"]), "127.0.0.1", 0)
    with urllib.request.urlopen(server.url, timeout=5) as response:  # noqa: S310 - local
        assert b"xgw_messages_received" in response.read()


def test_a_port_in_use_is_one_sentence_naming_it_and_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            serve_metrics(GatewayMetrics(["t"]), "127.0.0.1", port)
    message = str(raised.value)
    assert message.startswith(f"cannot serve /metrics on 127.0.0.1:{port}: address already in use")
    assert "XGW_METRICS_PORT" in message


def test_an_address_this_machine_does_not_have_is_named() -> None:
    with pytest.raises(ConfigError, match=r"cannot serve /metrics on 10\.99\.99\.99:0: "):
        serve_metrics(GatewayMetrics(["t"]), "10.99.99.99", 0)
