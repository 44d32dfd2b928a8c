"""Which keys the exchange trusts, and for whom.

The pipeline and the agency client ask a :class:`TrustStore` to resolve the key named by a JWS
header at a given time; :class:`gateway.trust.x509.X509TrustStore` implements it with agency
certificates from the exchange CA (chain, validity, key usage, revocation), raising the
matching rejections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gateway.wire.keys import VerificationKey


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key the exchange trusts, and the agency (or the gateway) it belongs to."""

    owner: str
    key: VerificationKey
    certificate_der: bytes | None = None  # the certificate that vouched for the key, if any

    @property
    def kid(self) -> str:
        """The key's id."""
        return self.key.kid


class TrustStore(Protocol):
    """Resolves the key a JWS header names."""

    def resolve(self, header: Mapping[str, Any], at: datetime) -> TrustedKey:
        """Return the key ``header`` names, trusted at ``at``; else raise :class:`Rejection`."""
        ...
