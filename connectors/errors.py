"""Exceptions of the connectors package.

ConnectorError
├── TransportError     the broker could not be reached or did not acknowledge in time
├── InvalidEventError  the model to publish does not validate
├── RefusedDelivery    a delivery or receipt failed verification (carries a ReasonCode)
├── RequestTimedOut    a request got no answer by its deadline (carries a ReasonCode)
└── RequestRefused     the gateway refused a request (carries a ReasonCode)
"""

from __future__ import annotations

from gateway.reasons import ReasonCode


class ConnectorError(Exception):
    """Root of every error raised by the agency client."""


class TransportError(ConnectorError):
    """The broker could not be reached or did not acknowledge in time."""


class InvalidEventError(ConnectorError):
    """The event to publish does not validate against its schema."""


class RefusedDelivery(ConnectorError):
    """A delivery or receipt failed verification and was not handed to the application."""

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class RequestTimedOut(ConnectorError):
    """A request got no answer before its deadline."""

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class RequestRefused(ConnectorError):
    """The gateway refused a request (no route, not entitled, invalid...)."""

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
