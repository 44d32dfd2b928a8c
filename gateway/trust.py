"""Which keys the exchange trusts, and for whom.

The pipeline and the agency client ask a :class:`TrustStore` to resolve the key named by a JWS
header at a given time. This module's :class:`KeyDirTrustStore` is a plain map from key id to
(owner, public key), loaded from PEM files; an X.509 store (certificate chains, validity,
revocation) implements the same protocol and raises the matching rejections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import ConfigError, Rejection
from gateway.keys import VerificationKey, load_public_pem
from gateway.reasons import ReasonCode

GATEWAY_OWNER = "gateway"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key the exchange trusts, and the agency (or the gateway) it belongs to."""

    owner: str
    key: VerificationKey

    @property
    def kid(self) -> str:
        """The key's id."""
        return self.key.kid


class TrustStore(Protocol):
    """Resolves the key a JWS header names."""

    def resolve(self, header: Mapping[str, Any], at: datetime) -> TrustedKey:
        """Return the key ``header`` names, trusted at ``at``; else raise :class:`Rejection`."""
        ...


class KeyDirTrustStore:
    """Trusts a fixed set of public keys, each bound to one owner."""

    def __init__(self, keys: Iterable[TrustedKey]) -> None:
        self._by_kid: dict[str, TrustedKey] = {}
        for trusted in keys:
            self._by_kid[trusted.kid] = trusted

    @classmethod
    def from_directory(cls, directory: Path) -> KeyDirTrustStore:
        """Load ``<owner>[.<n>].pub.pem`` files; several files per owner allow key rotation."""
        files = sorted(directory.glob("*.pub.pem"))
        if not files:
            raise ConfigError(f"no public keys (*.pub.pem) in {directory}; run 'xgw pki init'")
        return cls(TrustedKey(f.name.split(".", 1)[0], load_public_pem(f)) for f in files)

    def resolve(self, header: Mapping[str, Any], at: datetime) -> TrustedKey:  # noqa: ARG002 - plain keys have no validity window
        """Return the key named by the header's ``kid``."""
        trusted = self._by_kid.get(str(header.get("kid")))
        if trusted is None:
            raise Rejection(ReasonCode.UNKNOWN_SIGNER, "the signature's kid names no trusted key")
        return trusted

    def owners(self) -> set[str]:
        """Every owner that holds at least one key."""
        return {t.owner for t in self._by_kid.values()}
