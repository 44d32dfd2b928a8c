"""Exceptions of the gateway package.

Every error the gateway raises derives from :class:`XgwError`, so a caller (the CLI, a connector)
can catch one root. Library errors (aiokafka, cryptography, pydantic) are translated at the
boundary with ``raise ... from exc`` and never leak.

    XgwError
    ├── ConfigError            settings, policy or key files are missing or invalid
    ├── BrokerError            the broker cannot be started, reached or used
    ├── KeyMaterialError       a key file cannot be read, written or parsed
    ├── StateError             the worker's state store (its SQLite scratch file) failed
    └── Rejection              a record fails a check; carries a ReasonCode
"""

from __future__ import annotations

from gateway.reasons import ReasonCode


class XgwError(Exception):
    """Root of every error raised by the gateway."""


class ConfigError(XgwError):
    """Settings, policy or key files are missing or invalid."""


class BrokerError(XgwError):
    """The broker cannot be started, reached or used."""


class KeyMaterialError(XgwError):
    """A key file cannot be read, written or parsed."""


class StateError(XgwError):
    """The worker's state store failed (a full disk, a deleted scratch file)."""


class Rejection(XgwError):
    """A record fails one of the gateway's checks.

    ``detail`` is for operators: it names what failed, never a payload value.
    """

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
