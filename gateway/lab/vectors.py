"""Test vectors of the wire format, like an RFC appendix: ``tests/vectors/`` is written by this.

From a fixed PKI (test-only keys, kept in the vectors folder), fixed events (fixed ids, times
and disclosure salts) and a fixed clock, the real pipeline makes deliveries and receipts. Ed25519
signatures are deterministic, so the same inputs give the same bytes: a test regenerates the
vectors and compares them, and the wire format cannot change by accident. Beside the valid
outputs are invalid ones, each broken in one way, with the reason the agency client gives.

``manifest.json`` lists every case; the Java and Node.js verifiers of ``connectors/verifiers/``
read the same manifest (docs/verifiers.md)::

    python -m gateway.lab.vectors tests/vectors            # rewrite the vectors from their PKI
    python -m gateway.lab.vectors tests/vectors --new-pki  # a new PKI first (all bytes change)

:func:`write_live` writes the same layout from any exchange, with random salts and the real
clock: a delivery made in the run, for the verifiers' live check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway import names
from gateway.clock import rfc3339
from gateway.core import envelope, profile, stamp
from gateway.core.envelope import subject_digest
from gateway.core.pipeline import IngressRecord, Pipeline, PipelineConfig
from gateway.core.policy import load_policy
from gateway.core.replay import ReplayWindow
from gateway.errors import XgwError
from gateway.names import GATEWAY_OWNER, TopicNames
from gateway.settings import DEFAULT_POLICY_FILE
from gateway.trust.ca import enroll, init_ca, load_signing_key
from gateway.trust.layout import PkiLayout
from gateway.trust.pem import write_private_pem
from gateway.trust.x509 import X509TrustStore
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from gateway.wire.canonical import canonical_bytes
from gateway.wire.jws import sign_detached
from gateway.wire.keys import SigningKey
from schemas.base import EventModel
from schemas.common import Address
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidentRegistered,
)
from schemas.registry import REGISTRY

# The moment the vectors are made and verified: a verifier checks certificate validity and the
# CRL at this time, not at its own clock.
AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
AGENCIES = ("police", "health", "education", "land")
MANIFEST = "manifest.json"
WARNING = (
    "TEST-ONLY certificates: their private keys are derived from public seeds "
    "(gateway.lab.vectors.vector_key), so anyone can re-sign these vectors. Never trust this "
    "root or these keys outside tests."
)
FORMAT = "xgw-test-vectors/1"
_SALT_CONTEXT = b"xgw test vector salt\x00"
_KEY_CONTEXT = b"xgw test vector key\x00"
# The order of the P-256 group: a root key is a scalar in [1, order - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def vector_key(owner: str) -> SigningKey:
    """``owner``'s TEST-ONLY Ed25519 key, derived from a public seed.

    The vectors' private keys are never stored in the repository: they are made again from
    these seeds wherever the vectors are regenerated (:func:`install_keys`).
    """
    seed = hashlib.sha256(_KEY_CONTEXT + owner.encode()).digest()
    return SigningKey.from_private_key(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def vector_root_key() -> ec.EllipticCurvePrivateKey:
    """The TEST-ONLY root CA key (P-256), derived from a public seed."""
    seed = int.from_bytes(hashlib.sha256(_KEY_CONTEXT + b"root").digest(), "big")
    return ec.derive_private_key(seed % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def install_keys(pki_dir: Path) -> None:
    """Write the derived private keys beside the certificates of a vectors PKI folder.

    A certificate whose key is not the derived one (another PKI) is left without a key.
    """
    layout = PkiLayout(pki_dir)
    write_private_pem(SigningKey.from_private_key(vector_root_key()), layout.root_key)
    for certificate in layout.certificate_files():
        owner = certificate.name.split(".", 1)[0]
        key = vector_key(owner)
        public = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
        if public == key.private_key.public_key():
            write_private_pem(key, layout.key_of(certificate))


@dataclass(frozen=True, slots=True)
class Case:
    """One record a recipient verifies, and what it must conclude."""

    name: str
    kind: str  # "delivery" or "receipt"
    verifier: str  # the agency whose client reads it
    topic: str
    key: str
    value: bytes
    description: str
    reason: str | None = None  # None: valid; else the reason code the agency client gives

    def entry(self) -> dict[str, Any]:
        """The manifest entry: everything but the bytes, which go to ``cases/<name>.json``."""
        return {
            "name": self.name,
            "file": f"cases/{self.name}.json",
            "kind": self.kind,
            "verifier": self.verifier,
            "topic": self.topic,
            "key": self.key,
            "expect": "valid" if self.reason is None else "invalid",
            "reason": self.reason,
            "description": self.description,
        }


@dataclass
class _World:
    """The exchange the vectors are made in: its keys, a pipeline and the outputs so far."""

    pki_dir: Path
    at: datetime
    salt: Callable[[str, str], str] | None
    keys: dict[str, SigningKey] = field(init=False)
    pipeline: Pipeline = field(init=False)
    offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = {
            owner: load_signing_key(self.pki_dir, owner, embed=owner == GATEWAY_OWNER, at=self.at)
            for owner in (GATEWAY_OWNER, *AGENCIES)
        }
        config = PipelineConfig(
            topics=TopicNames(),
            trust=X509TrustStore.from_directory(self.pki_dir),
            registry=REGISTRY,
            policy=load_policy(DEFAULT_POLICY_FILE, REGISTRY),
            gateway_key=self.keys[GATEWAY_OWNER],
            max_record_bytes=256 * 1024,
        )
        self.pipeline = Pipeline(config, ReplayWindow(timedelta(days=1), 1000))

    def event(
        self,
        agency: str,
        model: EventModel,
        event_id: str,
        extra: dict[str, Any] | None = None,
        age: timedelta = timedelta(minutes=1),
    ) -> bytes:
        """``agency``'s signed event of ``model``, as the bytes it publishes."""
        attributes = {
            "specversion": profile.SPECVERSION,
            "id": event_id,
            "source": names.agency_source(agency),
            "type": model.event_type,
            "subject": subject_digest(model.subject_id()),
            "time": rfc3339(self.at - age),
            "datacontenttype": profile.CONTENT_TYPE,
            **(extra or {}),
        }
        fixed = self.salt
        salt = None if fixed is None else (lambda name: fixed(event_id, name))
        data = model.model_dump(mode="json")
        return envelope.encode(envelope.seal(attributes, data, self.keys[agency], salt=salt))

    def decide(self, agency: str, value: bytes) -> dict[str, list[bytes]]:
        """Decide ``value`` on ``agency``'s ingress topic; its outputs by topic."""
        topic = TopicNames().ingress(agency)
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        subject = json.loads(value)["subject"].encode()
        decision = self.pipeline.decide(IngressRecord(topic, 0, offset, subject, value), self.at)
        outputs: dict[str, list[bytes]] = {}
        for out in decision.outputs:
            outputs.setdefault(out.topic, []).append(out.value or b"")
        return outputs


def fixed_salt(event_id: str, name: str) -> str:
    """A disclosure salt derived from the event id and field name: 128 bits, like a random one.

    Only for test vectors, whose bytes must not change between runs; a real salt is random.
    """
    digest = hashlib.sha256(_SALT_CONTEXT + f"{event_id}/{name}".encode()).digest()
    return b64url.encode(digest[:16])


def _resident() -> ResidentRegistered:
    return ResidentRegistered(
        personal_id="079190012345",
        full_name="Nguyễn Thị Minh Khai",
        date_of_birth=date(1990, 5, 17),
        sex="female",
        permanent_address=Address(
            street="12 Lê Lợi",
            commune_code="26740",
            commune_name="Phường Sài Gòn",
            province_code="79",
            province_name="Thành phố Hồ Chí Minh",
        ),
        registered_on=date(2026, 11, 20),
    )


def _restamp(raw: bytes, key: SigningKey, header: dict[str, Any] | None = None) -> bytes:
    """``raw`` (changed) stamped again by the gateway's key, alone in a tree of one."""
    event = {k: v for k, v in json.loads(raw).items() if k not in profile.STAMP_ATTRIBUTES}
    leaf = stamp.leaf(event)
    token = sign_detached(leaf.hash, key, header or stamp.stamp_header(1))
    return envelope.encode({**event, profile.STAMP: token, profile.STAMP_PROOF: "0.1"})


def _edit(raw: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    event = json.loads(raw)
    change(event)
    return envelope.encode(event)


def _with_value(raw: bytes, name: str, value: Any) -> bytes:
    """A delivery whose disclosure of ``name`` holds ``value`` (same salt, new digest)."""

    def change(event: dict[str, Any]) -> None:
        disclosures = []
        for encoded in sd.split(event[profile.DISCLOSURES]):
            disclosure = sd.parse(encoded)
            if disclosure.name == name:
                disclosure = sd.make(name, value, disclosure.salt)
            disclosures.append(disclosure.encoded)
        event[profile.DISCLOSURES] = "~".join(disclosures)

    return _edit(raw, change)


def _cases(world: _World) -> tuple[list[tuple[str, str, bytes]], list[Case]]:
    """The ingress records (name, agency, bytes) and every case made of them."""
    topics = TopicNames()
    resident = _resident()
    registered = world.event("police", resident, "5b0e8f8e-2d5c-4a53-9a65-2f3f2f0d6a11")
    question = IdentityVerificationRequested(
        personal_id=resident.personal_id,
        full_name=resident.full_name,
        date_of_birth=resident.date_of_birth,
    )
    deadline = {profile.DEADLINE: rfc3339(world.at + timedelta(seconds=20))}
    request_id = "0f9d3c52-6a1e-4f0b-8d43-7c1b9e2a5d10"
    asked = world.event("land", question, request_id, deadline, timedelta(seconds=5))
    ingress = [("resident-registered", "police", registered)]
    out = world.decide("police", registered)
    subject = json.loads(registered)["subject"]
    cases = [
        Case(
            f"delivery-{agency}",
            "delivery",
            agency,
            topics.deliver(agency),
            subject,
            out[topics.deliver(agency)][0],
            f"the police registration as delivered to {agency}, minimised to its purpose",
        )
        for agency in ("health", "education", "land")
        if topics.deliver(agency) in out
    ]
    receipt = out[topics.receipts("police")][0]
    cases.append(
        Case(
            "receipt-accepted",
            "receipt",
            "police",
            topics.receipts("police"),
            json.loads(receipt)["data"]["event_id"],
            receipt,
            "the police's receipt: accepted, naming the recipients",
        )
    )
    again = world.decide("police", registered)
    cases.append(
        Case(
            "receipt-rejected",
            "receipt",
            "police",
            topics.receipts("police"),
            json.loads(receipt)["data"]["event_id"],
            again[topics.receipts("police")][0],
            "the police's receipt for the same record sent again: duplicate_id",
        )
    )
    ingress.append(("identity-verification-requested", "land", asked))
    asked_out = world.decide("land", asked)
    request = asked_out[topics.deliver("police")][0]
    cases.append(
        Case(
            "delivery-request",
            "delivery",
            "police",
            topics.deliver("police"),
            subject,
            request,
            "land's identity question as delivered to the police (xgwdeadline signed)",
        )
    )
    answer = IdentityVerified(
        personal_id=resident.personal_id,
        match=True,
        full_name_matches=True,
        date_of_birth_matches=True,
    )
    answered = world.event(
        "police",
        answer,
        "c3a1f7e2-9b4d-4e6a-a2f1-5d8e7b6c4a39",
        {profile.CORRELATION_ID: request_id},
    )
    ingress.append(("identity-verified", "police", answered))
    answered_out = world.decide("police", answered)
    cases.append(
        Case(
            "delivery-response",
            "delivery",
            "land",
            topics.deliver("land"),
            subject,
            answered_out[topics.deliver("land")][0],
            "the police's answer as delivered to land (correlationid signed)",
        )
    )
    cases.extend(_invalid(world, cases))
    return ingress, cases


def _invalid(world: _World, valid: list[Case]) -> Iterable[Case]:
    """Each valid case broken in one way, with the reason the agency client gives."""
    gateway = world.keys[GATEWAY_OWNER]
    by_name = {case.name: case for case in valid}
    land, health = by_name["delivery-land"], by_name["delivery-health"]
    receipt = by_name["receipt-accepted"]

    def broken(base: Case, name: str, value: bytes, reason: str, why: str, **kw: str) -> Case:
        return Case(
            name,
            base.kind,
            kw.get("verifier", base.verifier),
            base.topic,
            base.key,
            value,
            why,
            reason,
        )

    def purpose(event: dict[str, Any]) -> None:
        event[profile.PURPOSE] += "x"

    def index(event: dict[str, Any]) -> None:
        index, size, *path = event[profile.STAMP_PROOF].split(".")
        moved = (int(index) + 1) % int(size)
        event[profile.STAMP_PROOF] = ".".join((str(moved), size, *path))

    def other_agency(event: dict[str, Any]) -> None:
        unsigned = {k: v for k, v in event.items() if k not in profile.UNSIGNED_ATTRIBUTES}
        event[profile.SIGNATURE] = sign_detached(canonical_bytes(unsigned), world.keys["health"])
        event[profile.SIGNER_CERTIFICATE] = _certificate_text(world, "health")

    no_crit = {"typ": "xgw-stamp+jws", "xgw": {"tree": "rfc9162-sha256", "size": 1}}
    yield broken(
        land,
        "invalid-changed-purpose",
        _edit(land.value, purpose),
        "bad_signature",
        "xgwpurpose changed after stamping: the stamp's root no longer matches",
    )
    yield broken(
        land,
        "invalid-proof-index",
        _edit(land.value, index),
        "bad_signature",
        "the leaf index of xgwstampproof changed: another root",
    )
    yield broken(
        land,
        "invalid-stamp-without-crit",
        _restamp(land.value, gateway, no_crit),
        "bad_signature",
        'a genuine gateway signature whose header lacks "crit": ["xgw"]',
    )
    yield broken(
        land,
        "invalid-changed-value",
        _restamp(_with_value(land.value, "full_name", "Nguyễn Văn An"), gateway),
        "disclosure_mismatch",
        "a disclosed value changed and the delivery stamped again by the gateway: the "
        "origin's digests catch it",
    )
    yield broken(
        land,
        "invalid-signed-by-another-agency",
        _restamp(_edit(land.value, other_agency), gateway),
        "signer_agency_mismatch",
        "the origin signature made with health's key for a police event, stamped again",
    )
    yield broken(
        health,
        "invalid-delivery-for-another-recipient",
        health.value,
        "malformed_envelope",
        "health's delivery read by land: xgwrecipient is not land",
        verifier="land",
    )
    yield broken(
        receipt,
        "invalid-receipt-for-another-agency",
        receipt.value,
        "malformed_envelope",
        "the police's receipt read by health: xgwrecipient is not health",
        verifier="health",
    )


def _certificate_text(world: _World, owner: str) -> str:
    """``owner``'s certificate as a delivery carries it (base64 DER)."""
    return load_signing_key(world.pki_dir, owner, embed=True, at=world.at).x5c[0]


def write(
    directory: Path, pki_dir: Path, *, at: datetime, salt: Callable[[str, str], str] | None
) -> None:
    """Write the ingress records, the cases and the manifest into ``directory``."""
    world = _World(pki_dir, at, salt)
    ingress, cases = _cases(world)
    write_cases(directory, pki_dir, at=at, ingress=ingress, cases=cases)


def write_cases(
    directory: Path,
    pki_dir: Path,
    *,
    at: datetime,
    ingress: Iterable[tuple[str, str, bytes]],
    cases: Iterable[Case],
) -> None:
    """Write ingress records ``(name, agency, bytes)``, cases and their manifest.

    The layout every verifier reads; ``at`` is the instant they verify at, and ``pki_dir`` the
    exchange whose root and CRL they trust (any exchange: a test writes what a live gateway
    delivered through Kafka).
    """
    ingress, cases = list(ingress), list(cases)
    (directory / "ingress").mkdir(parents=True, exist_ok=True)
    (directory / "cases").mkdir(parents=True, exist_ok=True)
    for name, _, value in ingress:
        (directory / "ingress" / f"{name}.json").write_bytes(value)
    for case in cases:
        (directory / "cases" / f"{case.name}.json").write_bytes(case.value)
    layout = PkiLayout(pki_dir)
    manifest = {
        "format": FORMAT,
        "warning": WARNING,
        "verify_at": rfc3339(at),
        "root_certificate": _relative(layout.root_certificate, directory),
        "crl": _relative(layout.crl, directory),
        "ingress": [
            {"file": f"ingress/{name}.json", "topic": TopicNames().ingress(agency)}
            for name, agency, _ in ingress
        ],
        "cases": [case.entry() for case in cases],
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (directory / MANIFEST).write_text(text, encoding="utf-8")


def _relative(path: Path, directory: Path) -> str:
    try:
        return str(path.resolve().relative_to(directory.resolve()))
    except ValueError:
        return str(path.resolve())


def write_vectors(directory: Path, *, new_pki: bool = False) -> None:
    """(Re)write ``directory``'s vectors from its ``pki/`` (made first when asked or missing)."""
    pki_dir = directory / "pki"
    if new_pki and pki_dir.exists():
        shutil.rmtree(pki_dir)
    if not PkiLayout(pki_dir).root_certificate.exists():
        made = AT - timedelta(hours=1)
        init_ca(
            pki_dir, now=made, root_key=vector_root_key(), gateway_key=vector_key(GATEWAY_OWNER)
        )
        for agency in AGENCIES:
            enroll(pki_dir, agency, now=made, key=vector_key(agency))
    install_keys(pki_dir)  # git-ignored: made again from the seeds
    for sub in ("ingress", "cases"):
        shutil.rmtree(directory / sub, ignore_errors=True)
    write(directory, pki_dir, at=AT, salt=fixed_salt)


def write_live(directory: Path, pki_dir: Path, at: datetime) -> None:
    """The same layout from the exchange in ``pki_dir``, with random salts, decided at ``at``."""
    write(directory, pki_dir, at=at, salt=None)


def main(argv: list[str] | None = None) -> int:
    """Write the vectors into the directory given; one line on stderr when that fails."""
    parser = argparse.ArgumentParser(prog="python -m gateway.lab.vectors", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--new-pki", action="store_true", help="make a new test-only PKI first")
    args = parser.parse_args(argv)
    try:
        write_vectors(args.directory, new_pki=args.new_pki)
    except XgwError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
