"""Mock connector of the Department of Education and Training: school planning and admissions.

It notes the children that health and police tell it about (births, registrations) to plan
school places per commune, admits pupils after the police confirm the residence the family
declared, and issues diplomas.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.mock.people import (
    ENTRY_GRADES,
    Person,
    diploma,
    enrolment,
    grade_in,
    local_day,
    resident_aged,
    school_year,
)
from connectors.mock.verification import verified
from schemas.common import Address
from schemas.health import BirthCertificateIssued
from schemas.police import (
    ResidenceVerificationRequested,
    ResidentAddressChanged,
    ResidentRegistered,
)

log = logging.getLogger("xgw.mock.education")
MAX_PEOPLE = 50_000  # the mock's memory bound; the oldest entries are forgotten first
SCHOOL_AGE = 18  # children are noted for planning until they come of age
DIPLOMA_AGES = (15, 18)  # end of lower secondary (grade 9) to end of upper secondary (grade 12)

AdmissionOutcome = Literal[
    "enrolled", "not_school_age", "no_address", "residence_not_verified", "no_answer", "refused"
]


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one application, and the enrolment published when it succeeded."""

    outcome: AdmissionOutcome
    published: PublishedEvent | None = None


class EducationConnector:
    """Education's list of children for planning, its admissions and its diplomas."""

    agency = "education"

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self._rng = rng
        self.children: dict[str, Person] = {}  # under 18, from births and registrations
        self.pupils: dict[str, str] = {}  # personal id -> school year of the last enrolment
        self.outcomes: Counter[AdmissionOutcome] = Counter()

    def planning(self) -> Counter[tuple[int, str | None]]:
        """Children per (year they start grade 1, commune of residence or None if not known)."""
        return Counter(
            (child.date_of_birth.year + 6, child.address.commune_code if child.address else None)
            for child in self.children.values()
        )

    # --- reactions ---------------------------------------------------------------------------

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        """Note births, registrations and moves of children; education publishes nothing back."""
        data: dict[str, Any] = dict(delivery.data)
        day = local_day(delivery.time)
        known = self.children.get(data["personal_id"])
        if delivery.type in (BirthCertificateIssued.event_type, ResidentRegistered.event_type):
            # A birth certificate carries no address (the place of birth is the maternity's):
            # keep the residence police registered, whichever of the two arrives first.
            home = data.get("permanent_address") or (known.address if known else None)
            child = Person(data["personal_id"], data["full_name"], data["date_of_birth"])
            self._note(replace(child, address=home), day)
        elif delivery.type == ResidentAddressChanged.event_type and known is not None:
            self._note(replace(known, address=data["new_address"]), day)
        return []

    def _note(self, person: Person, day: date) -> None:
        if person.age_on(day) >= SCHOOL_AGE:
            return  # an adult: not a pupil to plan for
        self.children[person.personal_id] = person
        if len(self.children) > MAX_PEOPLE:
            del self.children[next(iter(self.children))]

    # --- its own stream ----------------------------------------------------------------------

    async def publish_next(self, today: date) -> PublishedEvent | None:
        """Admit a child of an entry grade (75 %) or issue a diploma; ``None`` if refused."""
        year, _ = school_year(today)
        applicants = [
            c
            for c in self.children.values()
            if c.address is not None
            and grade_in(c.date_of_birth, year) in ENTRY_GRADES
            and self.pupils.get(c.personal_id) != year
        ]
        if applicants and self._rng.random() < 0.75:  # noqa: PLR2004 - event mix
            child = self._rng.choice(applicants)
            # One family in twenty declares an address the police do not hold.
            wrong = self._rng.random() < 0.05  # noqa: PLR2004 - error rate
            other = self._rng.choice(applicants).address if wrong else None
            return (await self.admit(child, today, claimed=other)).published
        youngest, oldest = DIPLOMA_AGES
        graduates = [c for c in self.children.values() if youngest <= c.age_on(today) <= oldest]
        person = (
            self._rng.choice(graduates)
            if graduates
            else Person.of(resident_aged(self._rng, today, youngest, oldest))
        )
        return await self.issue_diploma(person, today)

    async def admit(
        self, child: Person, today: date, *, claimed: Address | None = None
    ) -> Admission:
        """Ask the police to confirm the declared residence, then enrol the child if it holds.

        ``claimed`` is the address on the application (the child's known address by default).
        """
        application = enrolment(self._rng, child, today)
        place = claimed or child.address
        if application is None:
            return self._outcome("not_school_age")
        if place is None:
            return self._outcome("no_address")
        question = ResidenceVerificationRequested(
            personal_id=child.personal_id, claimed_address=place
        )
        stopped = await verified(self.client, question, "residence", log)
        if stopped == "not_verified":
            return self._outcome("residence_not_verified")
        if stopped is not None:
            return self._outcome(stopped)
        published = await self.client.publish(application)
        self.pupils[child.personal_id] = application.school_year
        return self._outcome("enrolled", published)

    def _outcome(
        self, outcome: AdmissionOutcome, published: PublishedEvent | None = None
    ) -> Admission:
        self.outcomes[outcome] += 1
        return Admission(outcome, published)

    async def issue_diploma(self, person: Person, today: date) -> PublishedEvent:
        """Publish a diploma for ``person`` (no agency receives these yet: no_recipients)."""
        return await self.client.publish(diploma(self._rng, person, today))
