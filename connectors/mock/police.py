"""Mock connector of the city police: the population register, and the answers it gives.

It publishes registrations and changes of address from its register, registers the children
whose birth certificates health sends, deregisters the dead, and answers identity and residence
verification requests with yes or no per field, never with register data.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from datetime import date
from typing import Any

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.mock.people import address, local_day, resident
from schemas.admin_units import name_key
from schemas.common import Address
from schemas.health import (
    BirthCertificateIssued,
    DeathCertificateIssued,
    HealthInsuranceCardIssued,
)
from schemas.land import LandTransferRegistered, LandUseRightCertificateIssued
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidenceKind,
    ResidenceVerificationRequested,
    ResidenceVerified,
    ResidentAddressChanged,
    ResidentDeceased,
    ResidentRegistered,
)

log = logging.getLogger("xgw.mock.police")
RESIDENCE_KINDS: tuple[ResidenceKind, ...] = ("permanent", "temporary")
MAX_REGISTER = 50_000  # the mock's memory bound; the oldest entries are forgotten first


def _same_name(left: str, right: str) -> bool:
    # Both spellings of a tone mark (Hoà / Hòa) are in use, and case carries no meaning.
    return name_key(left).casefold() == name_key(right).casefold()


def _same_place(claimed: Address, held: Address) -> bool:
    # A school catchment is a commune: a claim without a street is checked at that level.
    if claimed.commune_code != held.commune_code:
        return False
    if claimed.street is None:
        return True
    return held.street is not None and " ".join(claimed.street.casefold().split()) == " ".join(
        held.street.casefold().split()
    )


class PoliceConnector:
    """The police's register of residents, its events, and its answers to other agencies."""

    agency = "police"

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self._rng = rng
        self.register: list[ResidentRegistered] = []  # in order of registration, bounded
        self._residents: dict[str, ResidentRegistered] = {}
        self._residence: dict[str, dict[ResidenceKind, Address]] = {}
        self.deregistered: set[str] = set()
        self.vneid_cards: dict[str, str] = {}  # personal id -> BHYT card number shown in VNeID
        self.dwellings: Counter[str] = Counter()  # personal id -> parcels held (lawful dwelling)
        self.answered: Counter[str] = Counter()  # "identity:yes", "residence:no", ...

    # --- the register --------------------------------------------------------------------

    def resident(self, personal_id: str) -> ResidentRegistered | None:
        """The living registered resident with ``personal_id``, if any."""
        return self._residents.get(personal_id)

    def living(self) -> list[ResidentRegistered]:
        """Every living resident the register holds, oldest registration first."""
        return list(self._residents.values())

    def current_address(self, personal_id: str, kind: ResidenceKind) -> Address | None:
        """The resident's current permanent or temporary address."""
        return self._residence.get(personal_id, {}).get(kind)

    async def register_resident(self, person: ResidentRegistered) -> PublishedEvent | None:
        """Register ``person`` and publish it; ``None`` if the id is already registered."""
        if person.personal_id in self._residents or person.personal_id in self.deregistered:
            return None
        published = await self.client.publish(person)
        self._remember(person)
        return published

    def _remember(self, person: ResidentRegistered) -> None:
        self._residents[person.personal_id] = person
        self._residence[person.personal_id] = {"permanent": person.permanent_address}
        self.register.append(person)
        if len(self._residents) > MAX_REGISTER:
            oldest = next(iter(self._residents))
            del self._residents[oldest]
            self._residence.pop(oldest, None)
        del self.register[:-MAX_REGISTER]

    def _forget(self, personal_id: str) -> None:
        self._residents.pop(personal_id, None)
        self._residence.pop(personal_id, None)
        self.register[:] = [r for r in self.register if r.personal_id != personal_id]
        self.deregistered.add(personal_id)

    # --- its own stream --------------------------------------------------------------------

    async def publish_next(self, today: date) -> PublishedEvent:
        """Publish the next event: 70 % registrations, 30 % address changes."""
        if self._residents and self._rng.random() < 0.3:  # noqa: PLR2004 - event mix
            person = self._rng.choice(self.register)
            return await self.change_address(person.personal_id, today)
        while True:
            published = await self.register_resident(resident(self._rng, today))
            if published is not None:  # else the id was drawn twice: draw again
                return published

    async def change_address(self, personal_id: str, today: date) -> PublishedEvent:
        """Move a registered resident to a new permanent or temporary address."""
        person = self._residents[personal_id]
        kind = self._rng.choice(RESIDENCE_KINDS)
        new = address(self._rng)
        published = await self.client.publish(
            ResidentAddressChanged(
                personal_id=personal_id,
                full_name=person.full_name,
                residence_kind=kind,
                previous_address=self.current_address(personal_id, kind),
                new_address=new,
                effective_on=today,
            )
        )
        self._residence[personal_id][kind] = new
        return published

    # --- reactions ---------------------------------------------------------------------------

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        """React to one delivery; return what was published (registrations, answers)."""
        data: dict[str, Any] = dict(delivery.data)
        kind = delivery.type
        if kind == BirthCertificateIssued.event_type:
            return await self._register_child(data, local_day(delivery.time))
        if kind == DeathCertificateIssued.event_type:
            return await self._deregister(data, local_day(delivery.time))
        if kind == IdentityVerificationRequested.event_type:
            return [await self.client.respond(delivery, self.verify_identity(data))]
        if kind == ResidenceVerificationRequested.event_type:
            return [await self.client.respond(delivery, self.verify_residence(data))]
        if kind == HealthInsuranceCardIssued.event_type:
            self._note_card(data)
        elif kind == LandUseRightCertificateIssued.event_type:
            self.dwellings[data["personal_id"]] += 1
        elif kind == LandTransferRegistered.event_type:
            self.dwellings[data["personal_id"]] += 1
            held = self.dwellings[data["transferor_personal_id"]]
            self.dwellings[data["transferor_personal_id"]] = max(0, held - 1)
        return []

    async def _register_child(self, data: dict[str, Any], day: date) -> list[PublishedEvent]:
        """Register a newborn at a parent's permanent address (the place of birth if none)."""
        homes = [
            self.current_address(parent, "permanent")
            for parent in (data.get("mother_personal_id"), data.get("father_personal_id"))
            if parent is not None
        ]
        home: Address = next((h for h in homes if h is not None), data["place_of_birth"])
        child = ResidentRegistered(
            personal_id=data["personal_id"],
            full_name=data["full_name"],
            date_of_birth=data["date_of_birth"],
            sex=data["sex"],
            permanent_address=home,
            registered_on=max(day, data["date_of_birth"]),
        )
        published = await self.register_resident(child)
        return [published] if published else []

    async def _deregister(self, data: dict[str, Any], day: date) -> list[PublishedEvent]:
        """Register the death, close the residence registration, tell health and land."""
        personal_id: str = data["personal_id"]
        if personal_id in self.deregistered:
            return []  # the same certificate again, or a second one: deregistered once
        published = await self.client.publish(
            ResidentDeceased(
                personal_id=personal_id,
                full_name=data["full_name"],
                date_of_death=data["date_of_death"],
                deregistered_on=max(day, data["date_of_death"]),
                death_certificate_number=data.get("certificate_number"),
            )
        )
        self._forget(personal_id)
        self.vneid_cards.pop(personal_id, None)
        return [published]

    def _note_card(self, data: dict[str, Any]) -> None:
        if data.get("change_kind") == "terminated":
            self.vneid_cards.pop(data["personal_id"], None)
        else:
            self.vneid_cards[data["personal_id"]] = data["card_number"]

    # --- answers: yes or no per field, nothing from the register -----------------------------

    def verify_identity(self, asked: dict[str, Any]) -> IdentityVerified:
        """Whether the living resident ``asked["personal_id"]`` has the name and birth date asked.

        An unknown or deceased id answers no to every field, like an id whose fields all
        differ, so the answer does not reveal whether the id exists. A field the policy did not
        pass on cannot be confirmed and answers no.
        """
        held = self._residents.get(asked["personal_id"])
        name = asked.get("full_name")
        born = asked.get("date_of_birth")
        name_ok = held is not None and name is not None and _same_name(name, held.full_name)
        born_ok = held is not None and born is not None and born == held.date_of_birth
        answer = IdentityVerified(
            personal_id=asked["personal_id"],
            match=name_ok and born_ok,
            full_name_matches=name_ok,
            date_of_birth_matches=born_ok,
        )
        self.answered[f"identity:{'yes' if answer.match else 'no'}"] += 1
        return answer

    def verify_residence(self, asked: dict[str, Any]) -> ResidenceVerified:
        """Whether the resident lives at the claimed address, and under which kind of residence.

        Permanent residence is checked first. A mismatch says nothing more: neither where the
        person lives nor whether the id is known.
        """
        claimed: Address | None = asked.get("claimed_address")
        held = self._residence.get(asked["personal_id"], {})
        kind: ResidenceKind | None = None
        if claimed is not None:
            for candidate in RESIDENCE_KINDS:
                place = held.get(candidate)
                if place is not None and _same_place(claimed, place):
                    kind = candidate
                    break
        answer = ResidenceVerified(
            personal_id=asked["personal_id"], match=kind is not None, residence_kind=kind
        )
        self.answered[f"residence:{'yes' if answer.match else 'no'}"] += 1
        return answer
