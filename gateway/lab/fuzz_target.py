"""The fuzz target: any bytes, decided by the pipeline, checked against the gateway's promises.

One input is one small scenario, chosen by its first byte:

``RAW``      the rest of the input is an ingress record's value, on the ingress topic of the
             agency its second byte names, keyed by whatever ``subject`` it holds;
``RESEALED`` the rest is parsed as JSON and, when it is an object with a ``data`` object, sealed
             correctly by that agency before it is decided, so that mutations reach the schema,
             subject, policy and projection checks behind the signature;
``KEYED``    as ``RAW``, but the third byte is the length of the record key that follows it,
             and the value comes after the key;
``ANSWER``   as ``RESEALED``, decided in one batch right after a valid request of every
             request type (identity from land, residence from education), whose ids the input
             may answer (``correlationid``).

Whatever the input, :func:`check` asserts what docs/architecture.md promises: one decision per
record and nothing raised; an accepted record delivers to each recipient only the attributes
of the profile (``DELIVERED_ATTRIBUTES``) and the fields the policy grants that recipient; a
refused one has a reason code (never ``internal_error``, which is a gateway defect even though
it is refused safely) and a dead letter and delivers nothing; every output record can
be produced (UTF-8 header names, bytes, within Kafka's default record size).
The world (a PKI in a temporary folder, the shipped policy, a fixed clock) is built once per
process; every input gets a fresh pipeline, so a finding replays alone.
"""

from __future__ import annotations

import json
import random
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from connectors.mock import people
from gateway import names
from gateway.core import envelope, profile
from gateway.core.pipeline import Decision, IngressRecord, Pipeline, PipelineConfig
from gateway.core.policy import Policy, load_policy
from gateway.core.profile import Limits
from gateway.core.records import OutRecord
from gateway.core.replay import ReplayWindow
from gateway.lab.forgery import Forger, certificate_authority
from gateway.names import GATEWAY_OWNER, TopicNames
from gateway.reasons import ReasonCode
from gateway.settings import DEFAULT_POLICY_FILE
from gateway.trust.ca import ensure_exchange, load_signing_key
from gateway.trust.x509 import X509TrustStore
from gateway.wire import disclosure as sd
from gateway.wire.keys import SigningKey
from schemas.base import EventModel, RequestModel, ResponseModel
from schemas.education import StudentEnrolled
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidenceVerificationRequested,
    ResidenceVerified,
    ResidentDeceased,
    ResidentRegistered,
)
from schemas.registry import REGISTRY

# A fixed clock, so that a corpus kept between campaigns stays fresh (certificates are issued an
# hour before it and the seeds are sealed at it).
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
KAFKA_MAX_RECORD_BYTES = 1_048_588  # Apache Kafka's default message.max.bytes
# Limits smaller than the shipped ones, so that inputs of a few KiB reach every check (the
# fuzzer's inputs are at most MAX_INPUT_BYTES).
_MAX_RECORD_BYTES = 12 * 1024
_LIMITS = Limits(max_string_chars=2048)
MAX_INPUT_BYTES = 16 * 1024


class Mode(IntEnum):
    """What an input's first byte asks the target to do with the rest."""

    RAW = 0
    RESEALED = 1
    ANSWER = 2
    KEYED = 3


class InvariantBroken(AssertionError):
    """A decision broke one of the gateway's promises (the fuzzer reports it as a crash)."""


@dataclass(frozen=True)
class Scenario:
    """The records one input becomes, decided in one batch (the fuzzed record is the last)."""

    batch: tuple[IngressRecord, ...]


class FuzzWorld:
    """The exchange every input is decided in: keys, trust, policy, a fixed clock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.policy: Policy = load_policy(DEFAULT_POLICY_FILE, REGISTRY)
        self.agencies = self.policy.agencies
        ensure_exchange(directory, self.agencies, now=NOW - timedelta(hours=1))
        self.keys: dict[str, SigningKey] = {
            owner: load_signing_key(directory, owner, embed=owner == GATEWAY_OWNER)
            for owner in (GATEWAY_OWNER, *self.agencies)
        }
        self.topics = TopicNames()
        self.config = PipelineConfig(
            topics=self.topics,
            trust=X509TrustStore.from_directory(directory),
            registry=REGISTRY,
            policy=self.policy,
            gateway_key=self.keys[GATEWAY_OWNER],
            max_record_bytes=_MAX_RECORD_BYTES,
            limits=_LIMITS,
        )
        self.forger = Forger(
            {a: self.keys[a] for a in self.agencies},
            certificate_authority(directory),
            max_record_bytes=_MAX_RECORD_BYTES,
            max_string_chars=_LIMITS.max_string_chars,
        )
        self.samples = samples(random.Random(7))  # noqa: S311 - fake people, not secrets
        # Each request type's valid request, by its response type (decided before an ANSWER).
        self.requests: dict[str, tuple[str, dict[str, Any]]] = {
            m.response_type: (agency, self._sealed_request(agency, m, number))
            for number, (agency, m) in enumerate(self.samples)
            if isinstance(m, RequestModel)
        }

    @classmethod
    def temporary(cls) -> FuzzWorld:
        """A world in a fresh temporary folder (removed with the process's temporary files)."""
        return cls(Path(tempfile.mkdtemp(prefix="xgw-fuzz-")))

    def pipeline(self) -> Pipeline:
        """A fresh pipeline: empty replay window, nothing pending."""
        return Pipeline(self.config, ReplayWindow(timedelta(days=1), 1000))

    # --- turning bytes into records --------------------------------------------------------

    def scenario(self, data: bytes) -> Scenario | None:
        """The records ``data`` stands for, or ``None`` when it stands for nothing to decide."""
        if len(data) < 2:  # noqa: PLR2004 - the mode and agency bytes
            return None
        agency = self.agencies[data[1] % len(self.agencies)]
        payload = data[2:]
        mode = data[0] % len(Mode)
        if mode == Mode.RAW:
            return Scenario((self.record(agency, payload),))
        if mode == Mode.KEYED:
            size = payload[0] if payload else 0
            keyed = self.record(agency, payload[1 + size :])
            return Scenario((replace(keyed, key=payload[1 : 1 + size]),))
        sealed = self.resealed(agency, payload)
        if sealed is None:
            return None
        record = self.record(agency, sealed, offset=1)
        if mode == Mode.RESEALED:
            return Scenario((record,))
        asked = tuple(
            self.record(agency, envelope.encode(event), offset=i)
            for i, (agency, event) in enumerate(self.requests.values(), start=2)
        )
        return Scenario((*asked, record))

    def record(self, agency: str, value: bytes, *, offset: int = 0) -> IngressRecord:
        """``value`` on ``agency``'s ingress topic, keyed as a careful sender would key it."""
        return IngressRecord(
            topic=self.topics.ingress(agency),
            partition=0,
            offset=offset,
            key=_subject_key(value),
            value=value,
            headers=(("ce_type", b"fuzz"),),
        )

    def resealed(self, agency: str, payload: bytes) -> bytes | None:
        """``payload`` as a correctly signed event of ``agency``, or ``None`` if it cannot be."""
        try:
            event = json.loads(payload)
            if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
                return None
            data = event.pop("data")
            for name in (profile.SIGNATURE, profile.DISCLOSURES):
                event.pop(name, None)
            sealed = envelope.seal(event, data, self.keys[agency])
            # ASCII escapes keep lone surrogates, which UTF-8 cannot carry, as JSON carries them.
            return json.dumps(sealed, separators=(",", ":")).encode("ascii")
        except Exception:  # noqa: BLE001 - the harness's own preparation; not a finding
            return None

    def _sealed_request(self, agency: str, question: RequestModel, number: int) -> dict[str, Any]:
        attributes = {profile.DEADLINE: _rfc3339(NOW + timedelta(seconds=20))}
        event_id = str(uuid.UUID(int=number + 1))
        return self.forger.signed(
            agency, question, now=NOW, event_id=event_id, attributes=attributes
        )

    # --- the seed corpus ------------------------------------------------------------------

    def seeds(self) -> Iterator[bytes]:
        """Valid records of every type in every mode, and every hostile record of the forger."""
        index = {agency: bytes([i]) for i, agency in enumerate(self.agencies)}
        for agency, model in self.samples:
            attributes: dict[str, Any] = {}
            if isinstance(model, RequestModel):
                attributes[profile.DEADLINE] = _rfc3339(NOW + timedelta(seconds=20))
            if isinstance(model, ResponseModel):
                attributes[profile.CORRELATION_ID] = self.requests[model.event_type][1]["id"]
            event = self.forger.signed(agency, model, now=NOW, attributes=attributes)
            yield bytes([Mode.RAW]) + index[agency] + envelope.encode(event)
            unsealed = {
                k: v for k, v in event.items() if k not in (profile.SIGNATURE, profile.DISCLOSURES)
            }
            unsealed["data"] = model.model_dump(mode="json")
            mode = Mode.ANSWER if isinstance(model, ResponseModel) else Mode.RESEALED
            yield bytes([mode]) + index[agency] + envelope.encode(unsealed)
        resident = next(m for _, m in self.samples if isinstance(m, ResidentRegistered))
        for reason in self.forger.reasons():
            forged = self.forger.forge(reason, resident, NOW)
            key = (forged.key or b"")[:255]
            yield (
                bytes([Mode.KEYED]) + index[forged.agency] + bytes([len(key)]) + key + forged.value
            )
        yield from _hostile(index["police"])

    def dictionary(self) -> list[str]:
        """Words the mutator may splice in: attribute names, types, agencies, field names."""
        words = {*profile.DELIVERED_ATTRIBUTES, "_sd", "_sd_alg", sd.SD_ALG, *self.agencies}
        words |= {names.agency_source(a) for a in self.agencies}
        for model in (REGISTRY.model_for(t) for t in REGISTRY.types()):
            if model is not None:
                words |= {model.event_type, *model.model_fields}
        words |= {"\\ud800", "\\udfff", "\\u0000", "1e400", "-0", "null", "Nguyễn", "Thủ Đức"}
        return sorted(words)

    # --- the promises ---------------------------------------------------------------------

    def decide(self, scenario: Scenario) -> list[Decision]:
        """Decide the scenario's batch with a fresh pipeline at the world's clock."""
        return self.pipeline().decide_batch(scenario.batch, NOW)

    def check(self, scenario: Scenario, decisions: Sequence[Decision]) -> None:
        """Raise :class:`InvariantBroken` if the decisions break any promise of the gateway."""
        if len(decisions) != len(scenario.batch):
            raise InvariantBroken(f"{len(scenario.batch)} records, {len(decisions)} decisions")
        for record, decision in zip(scenario.batch, decisions, strict=True):
            for out in decision.outputs:
                _check_producible(out)
            deliveries = [o for o in decision.outputs if o.topic in self._delivery_topics]
            if decision.accepted:
                if not deliveries:
                    raise InvariantBroken("accepted with no delivery")
                for out in deliveries:
                    self._check_delivery(record, decision, out)
            else:
                if not isinstance(decision.reason, ReasonCode):
                    raise InvariantBroken(f"refused without a reason code: {decision.reason!r}")
                if decision.reason is ReasonCode.INTERNAL_ERROR:
                    # Refused safely, but a defect all the same: the gateway had no reason.
                    raise InvariantBroken(decision.detail)
                if deliveries:
                    raise InvariantBroken(f"refused ({decision.reason}) yet delivered")
                if not any(o.topic == self.topics.deadletter for o in decision.outputs):
                    raise InvariantBroken(f"refused ({decision.reason}) without a dead letter")

    @cached_property
    def _delivery_topics(self) -> dict[str, str]:
        return {self.topics.deliver(a): a for a in self.agencies}

    def _check_delivery(self, record: IngressRecord, decision: Decision, out: OutRecord) -> None:
        recipient = self._delivery_topics[out.topic]
        if out.value is None:
            raise InvariantBroken(f"empty delivery to {recipient}")
        event = json.loads(out.value)
        extra = set(event) - profile.DELIVERED_ATTRIBUTES
        if extra:
            raise InvariantBroken(f"delivered attributes outside the profile: {sorted(extra)}")
        if event.get(profile.RECIPIENT) != recipient:
            raise InvariantBroken(f"delivery on {recipient}'s topic names another recipient")
        granted = self.granted(str(decision.event_type), record, recipient)
        shown = {sd.parse(part).name for part in sd.split(event.get(profile.DISCLOSURES, ""))}
        if not shown <= granted:
            raise InvariantBroken(
                f"{recipient} received {sorted(shown - granted)}, granted only {sorted(granted)}"
            )
        if out.key != str(event.get("subject", "")).encode():
            raise InvariantBroken("delivery is not keyed by its subject")

    def granted(self, event_type: str, record: IngressRecord, recipient: str) -> frozenset[str]:
        """The fields the policy grants ``recipient`` of a record of ``event_type``."""
        route = self.policy.route_for(event_type)
        if route is not None:
            return next((g.fields for g in route.recipients if g.agency == recipient), frozenset())
        rule = self.policy.request_rule(event_type)
        sender = self.topics.agency_of_ingress(record.topic) or ""
        if rule is not None:
            asking = rule.requester(sender)
            return (
                asking.fields if asking is not None and recipient == rule.answerer else frozenset()
            )
        model = REGISTRY.model_for(event_type)
        if model is not None and issubclass(model, ResponseModel):
            rule = self.policy.request_rule(model.request_type)
            asking = rule.requester(recipient) if rule is not None else None
            if asking is not None and rule is not None and sender == rule.answerer:
                return asking.response_fields
        return frozenset()


def _check_producible(out: OutRecord) -> None:
    """An output record that Apache Kafka would take with its default limits."""
    size = len(out.value or b"") + len(out.key or b"")
    for name, value in out.headers:
        if not isinstance(name, str) or not isinstance(value, bytes):
            raise InvariantBroken(f"header {name!r} is not a text name with a bytes value")
        name.encode("utf-8")  # a lone surrogate raises here, as in the Kafka client
        size += len(name) + len(value)
    if size > KAFKA_MAX_RECORD_BYTES:
        raise InvariantBroken(f"a {size}-byte record to {out.topic} exceeds Kafka's default limit")


def _subject_key(value: bytes) -> bytes | None:
    try:
        subject = json.loads(value).get("subject")
    except Exception:  # noqa: BLE001 - no key is a key too
        return None
    return subject.encode("utf-8", "surrogatepass") if isinstance(subject, str) else None


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def samples(rng: random.Random) -> list[tuple[str, EventModel]]:
    """A valid event of every registered type, with the agency that publishes or asks it."""
    today = NOW.date()
    adult = people.resident_aged(rng, today, 30, 50)
    person = people.Person.of(adult)
    child = people.resident_aged(rng, today, 6, 6)
    card = people.insurance_card(rng, adult.personal_id, today, group="GD")
    holding = people.land_certificate(rng, person, today)
    models: list[tuple[str, EventModel]] = [
        ("police", adult),
        ("police", people.address_change(rng, adult, today)),
        ("health", people.vaccination(rng, adult, today)),
        ("health", people.birth_certificate(rng, today, mother=person)),
        ("health", people.death_certificate(rng, person, today)),
        ("health", card),
        ("education", _school_age(people.enrolment(rng, people.Person.of(child), today))),
        ("education", people.diploma(rng, person, today)),
        ("land", holding),
        ("land", people.land_transfer(rng, holding, people.Person.of(child), today)),
        (
            "land",
            IdentityVerificationRequested(
                personal_id=adult.personal_id,
                full_name=adult.full_name,
                date_of_birth=adult.date_of_birth,
            ),
        ),
        (
            "police",
            IdentityVerified(
                personal_id=adult.personal_id,
                match=True,
                full_name_matches=True,
                date_of_birth_matches=True,
            ),
        ),
    ]
    models += [
        (
            "education",
            ResidenceVerificationRequested(
                personal_id=child.personal_id, claimed_address=child.permanent_address
            ),
        ),
        ("police", ResidenceVerified(personal_id=child.personal_id, match=False)),
        (
            "police",
            ResidentDeceased(
                personal_id=adult.personal_id,
                full_name=adult.full_name,
                date_of_death=today,
                deregistered_on=today,
            ),
        ),
    ]
    return models


def _school_age(enrolment: StudentEnrolled | None) -> StudentEnrolled:
    if enrolment is None:
        raise ValueError("the sample child is not of school age")
    return enrolment


def _hostile(police: bytes) -> Iterator[bytes]:
    """Tiny records that once stopped a worker or leaked a field (issue 13), as seeds."""
    raw = bytes([Mode.RAW]) + police
    yield raw + b'{"specversion":"1.0","id":"\\ud800","source":"urn:x","type":"t"}'
    yield raw + b'{"data":{"_sd":[{}],"_sd_alg":"sha-256"}}'
    yield raw + b"[]"
    yield raw + b'{"id":1e400}'
    yield (
        bytes([Mode.RESEALED])
        + police
        + json.dumps(
            {"specversion": "1.0", "id": "x", "source": names.agency_source("police"), "data": {}}
        ).encode()
    )
