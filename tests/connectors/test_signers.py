"""Publishing from Java and Node.js: the signers of ``connectors/verifiers/`` are accepted.

``sign.mjs`` (jose, canonicalize) and ``Sign.java`` (nimbus-jose-jwt, the RFC 8785 library) use
stock libraries only and none of the gateway's code, as an agency's own system would
(docs/integration.md). Their events go through the real pipeline, and the deliveries made of
them verify in the Python agency client.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.client import AgencyClient
from connectors.transport import MemoryTransport
from gateway.core.pipeline import IngressRecord
from gateway.core.policy import Policy
from gateway.reasons import ReasonCode
from gateway.trust import ca
from gateway.wire import b64url
from schemas.police import ResidentRegistered
from tests.conftest import NOW, Pki, make_pipeline, make_pki, make_resident
from tests.support.verifiers import sign

# "Nguyễn Thị Minh Khai" as some keyboards type it: base letters and combining marks.
DECOMPOSED = unicodedata.normalize("NFD", "Nguyễn Thị Minh Khai")
LANGUAGES = ["node", "java"]


@pytest.fixture(scope="module")
def es256_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """An exchange whose police key is P-256 (ES256), the newest of its certificates."""
    directory = tmp_path_factory.mktemp("es256")
    make_pki(directory)
    ca.enroll(directory, "police", alg="ES256", not_before=NOW - timedelta(minutes=30))
    return make_pki(directory)


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_an_event_signed_in_another_language_is_accepted_and_delivered_in_nfc(
    language: str, alg: str, pki: Pki, es256_pki: Pki, policy: Policy, tmp_path: Path
) -> None:
    """Decomposed diacritics are normalised before signing; the delivery verifies."""
    exchange = pki if alg == "Ed25519" else es256_pki
    data = make_resident().model_dump(mode="json") | {"full_name": DECOMPOSED}
    key, value = sign(
        language, exchange.directory, "police", ResidentRegistered.event_type, data, NOW, tmp_path
    )
    header = json.loads(b64url.decode(json.loads(value)["xgwsig"].split(".")[0]))
    assert header["alg"] == alg
    pipeline = make_pipeline(exchange, policy)
    decision = pipeline.decide(IngressRecord("xgw.ingress.police", 0, 0, key, value), NOW)
    assert decision.reason is None, decision.detail
    outputs = {out.topic: out.value for out in decision.outputs}
    receipt = json.loads(outputs["xgw.receipts.police"] or b"")
    assert receipt["data"]["status"] == "accepted"
    assert receipt["data"]["record_sha256"] == hashlib.sha256(value).hexdigest()
    land = AgencyClient(
        agency="land",
        signing_key=exchange.keys["land"],
        trust=exchange.trust,
        transport=MemoryTransport(),
        clock=lambda: NOW,
    )
    delivered = land.verify_delivery(outputs["xgw.deliver.land"] or b"")
    assert delivered.data.full_name == "Nguyễn Thị Minh Khai"  # type: ignore[attr-defined]
    assert unicodedata.is_normalized("NFC", delivered.data.full_name)  # type: ignore[attr-defined]
    assert delivered.source_agency == "police"
    assert key == json.loads(value)["subject"].encode()


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_event_changed_after_signing_is_refused(
    language: str, pki: Pki, policy: Policy, tmp_path: Path
) -> None:
    """The signature is bound to the signed bytes: the same instant written otherwise fails."""
    data = make_resident().model_dump(mode="json")
    key, value = sign(
        language, pki.directory, "police", ResidentRegistered.event_type, data, NOW, tmp_path
    )
    event = json.loads(value)
    event["time"] = event["time"].replace("Z", "+00:00")
    changed = json.dumps(event, ensure_ascii=False).encode()
    decision = make_pipeline(pki, policy).decide(
        IngressRecord("xgw.ingress.police", 0, 0, key, changed), NOW
    )
    assert decision.reason == ReasonCode.BAD_SIGNATURE
