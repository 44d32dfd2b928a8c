"""Mock connector of the land registry: certificates, transfers, and owners who died.

A transfer is registered only after the police confirm the transferee's identity (name and
date of birth as declared in the dossier). A parcel whose holder died is flagged: from then on
only a transfer by inheritance is registered for it.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.mock.people import (
    Person,
    TransferKind,
    certificate_serial,
    land_certificate,
    land_transfer,
    resident_aged,
)
from connectors.mock.verification import verified
from schemas.land import LandUseRightCertificateIssued
from schemas.police import IdentityVerificationRequested, ResidentDeceased, ResidentRegistered

log = logging.getLogger("xgw.mock.land")
MAX_PEOPLE = 50_000  # the mock's memory bound; the oldest entries are forgotten first

ParcelKey = tuple[str, int, int]  # commune code, map sheet, parcel number
TransferOutcome = Literal[
    "transferred", "identity_not_verified", "holder_deceased", "no_answer", "refused"
]


@dataclass(frozen=True, slots=True)
class Transfer:
    """The outcome of one transfer dossier, and the transfer published when it was registered."""

    outcome: TransferOutcome
    published: PublishedEvent | None = None


def parcel_key(holding: LandUseRightCertificateIssued) -> ParcelKey:
    """The key of the holding's parcel in the register."""
    plot = holding.parcel
    return (plot.commune_code, plot.map_sheet_number, plot.parcel_number)


class LandConnector:
    """The land register: who holds which parcel, which holders died, and transfers."""

    agency = "land"

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self._rng = rng
        self.holdings: dict[ParcelKey, LandUseRightCertificateIssued] = {}
        self.deceased: dict[str, date] = {}  # holder's personal id -> date of death
        self.known_names: dict[str, str] = {}  # from police registrations (owner identity)
        self.applicants: list[Person] = []  # dossiers waiting for a parcel (see LifeEvents)
        self.outcomes: Counter[TransferOutcome] = Counter()

    def parcels_of(self, personal_id: str) -> list[ParcelKey]:
        """The parcels ``personal_id`` holds."""
        return [key for key, held in self.holdings.items() if held.personal_id == personal_id]

    @property
    def flagged(self) -> list[ParcelKey]:
        """Parcels whose holder died (succession pending)."""
        return [key for key, held in self.holdings.items() if held.personal_id in self.deceased]

    # --- its own stream ----------------------------------------------------------------------

    async def publish_next(self, today: date) -> PublishedEvent | None:
        """Issue a certificate (80 %) or transfer a parcel; ``None`` when a transfer fails."""
        if self.holdings and self._rng.random() < 0.2:  # noqa: PLR2004 - event mix
            key = self._rng.choice(list(self.holdings))
            transferee = (
                self.applicants.pop()
                if self.applicants
                else Person.of(resident_aged(self._rng, today, 18, 80))
            )
            kind: TransferKind = self._rng.choice(["sale", "sale", "sale", "gift", "exchange"])
            if self.holdings[key].personal_id in self.deceased:
                kind = "inheritance"
            return (await self.transfer(key, transferee, today, kind)).published
        owner = Person.of(resident_aged(self._rng, today, 18, 80))
        return await self.issue_certificate(owner, today)

    async def issue_certificate(self, owner: Person, today: date) -> PublishedEvent:
        """Issue ``owner`` a certificate for a new parcel and publish it."""
        holding = land_certificate(self._rng, owner, today)
        while parcel_key(holding) in self.holdings:
            holding = land_certificate(self._rng, owner, today)
        published = await self.client.publish(holding)
        self.holdings[parcel_key(holding)] = holding
        return published

    async def transfer(
        self, key: ParcelKey, transferee: Person, today: date, kind: TransferKind = "sale"
    ) -> Transfer:
        """Register the transfer of parcel ``key`` to ``transferee`` once police confirm them.

        The identity asked about is the one declared in the dossier; a parcel whose holder died
        passes only by inheritance.
        """
        holding = self.holdings[key]
        if holding.personal_id in self.deceased and kind != "inheritance":
            return self._outcome("holder_deceased")
        question = IdentityVerificationRequested(
            personal_id=transferee.personal_id,
            full_name=transferee.full_name,
            date_of_birth=transferee.date_of_birth,
        )
        stopped = await verified(self.client, question, "identity", log)
        if stopped == "not_verified":
            return self._outcome("identity_not_verified")
        if stopped is not None:
            return self._outcome(stopped)
        registered = land_transfer(self._rng, holding, transferee, today, kind)
        published = await self.client.publish(registered)
        self.holdings[key] = LandUseRightCertificateIssued(
            personal_id=registered.personal_id,
            full_name=registered.full_name,
            certificate_serial=registered.certificate_serial or certificate_serial(self._rng),
            parcel=holding.parcel,
            area_m2=holding.area_m2,
            use_purpose_code=holding.use_purpose_code,
            issued_on=today,
        )
        return self._outcome("transferred", published)

    def _outcome(
        self, outcome: TransferOutcome, published: PublishedEvent | None = None
    ) -> Transfer:
        self.outcomes[outcome] += 1
        return Transfer(outcome, published)

    # --- reactions ---------------------------------------------------------------------------

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        """Note registered owners' names and flag the parcels of deceased holders."""
        data: dict[str, Any] = dict(delivery.data)
        if delivery.type == ResidentRegistered.event_type:
            self.known_names[data["personal_id"]] = data["full_name"]
            if len(self.known_names) > MAX_PEOPLE:
                del self.known_names[next(iter(self.known_names))]
        elif delivery.type == ResidentDeceased.event_type:
            self.deceased[data["personal_id"]] = data["date_of_death"]
            # The subject is already a digest of the id: the log line carries no personal data.
            log.info(
                "holder deceased subject=%s parcels_flagged=%d",
                delivery.subject,
                len(self.parcels_of(data["personal_id"])),
            )
        return []
