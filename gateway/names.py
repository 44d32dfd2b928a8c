"""The exchange's names: agency ids, CloudEvents sources, certificate owners, Kafka topics.

Topics live under one configurable prefix (docs/architecture.md, "Topics"), which lets several
isolated exchanges (tests, staging) share one broker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AGENCY_ID = re.compile(r"[a-z][a-z0-9-]{1,31}")
# Owners of certificates that are not agencies; reserved, never enrolled as an agency.
GATEWAY_OWNER = "gateway"
ROOT_OWNER = "root"  # the root CA's owner in listings
SOURCE_PREFIX = "urn:hcm:agency:"
GATEWAY_SOURCE = "urn:hcm:xgw:gateway"


def agency_source(agency: str) -> str:
    """The CloudEvents ``source`` of an agency."""
    return f"{SOURCE_PREFIX}{agency}"


def agency_of_source(source: str) -> str | None:
    """The agency a ``source`` names, or ``None`` when it names none."""
    if not source.startswith(SOURCE_PREFIX):
        return None
    agency = source[len(SOURCE_PREFIX) :]
    return agency if AGENCY_ID.fullmatch(agency) else None


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Topic names for one exchange."""

    prefix: str = "xgw"

    def ingress(self, agency: str) -> str:
        """Signed events written by ``agency``."""
        return f"{self.prefix}.ingress.{agency}"

    def deliver(self, agency: str) -> str:
        """Verified, projected and stamped events for ``agency``."""
        return f"{self.prefix}.deliver.{agency}"

    def receipts(self, agency: str) -> str:
        """Receipts for what ``agency`` sent."""
        return f"{self.prefix}.receipts.{agency}"

    @property
    def deadletter(self) -> str:
        """Rejected records, untouched, with reason headers."""
        return f"{self.prefix}.deadletter"

    @property
    def audit(self) -> str:
        """One record per decision, without payload."""
        return f"{self.prefix}.audit"

    @property
    def checkpoints(self) -> str:
        """The audit writer's signed checkpoints, with consistency proofs; every agency reads it."""
        return f"{self.prefix}.audit.checkpoints"

    @property
    def state(self) -> str:
        """The workers' state changelog (replay window, pending requests); compacted."""
        return f"{self.prefix}.gateway.state"

    @property
    def monitor_facts(self) -> str:
        """The monitor's facts of each decision, keyed by the agency they are about."""
        return f"{self.prefix}.monitor.facts"

    @property
    def monitor_alerts(self) -> str:
        """The monitor's misuse alerts (agency, type, window, counts; no personal data)."""
        return f"{self.prefix}.monitor.alerts"

    def agency_of_ingress(self, topic: str) -> str | None:
        """Return the agency whose ingress topic this is, or ``None``."""
        head = f"{self.prefix}.ingress."
        if not topic.startswith(head):
            return None
        agency = topic[len(head) :]
        return agency if AGENCY_ID.fullmatch(agency) else None

    def all_for(self, agencies: tuple[str, ...]) -> list[str]:
        """Every topic of the exchange for these agencies."""
        per_agency = [f(a) for a in agencies for f in (self.ingress, self.deliver, self.receipts)]
        return [
            *per_agency,
            self.deadletter,
            self.audit,
            self.checkpoints,
            self.monitor_facts,
            self.monitor_alerts,
        ]
