"""Publishing from Node.js: ``connectors/verifiers/node/sign.mjs`` makes events the gateway accepts.

The signer uses stock npm packages only (jose, canonicalize) and none of the gateway's code, as
an agency's own system would (docs/integration.md). Its events go through the real pipeline,
and the deliveries made of them verify in the Python agency client and in both verifiers.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

from connectors.client import AgencyClient
from connectors.transport import MemoryTransport
from gateway.core.pipeline import IngressRecord, Pipeline
from schemas.police import ResidentRegistered
from tests.conftest import NOW, Pki, make_resident
from tests.support.verifiers import node_sign

# "Nguyễn Thị Minh Khai" as some keyboards type it: base letters and combining marks.
DECOMPOSED = unicodedata.normalize("NFD", "Nguyễn Thị Minh Khai")


def _signed(tmp_path: Path, pki: Pki, data: dict[str, Any]) -> tuple[bytes, bytes]:
    return node_sign(pki.directory, "police", ResidentRegistered.event_type, data, NOW, tmp_path)


def test_an_event_signed_in_node_is_accepted_and_delivered_in_nfc(
    pki: Pki, pipeline: Pipeline, tmp_path: Path
) -> None:
    """Decomposed diacritics are normalised before signing; the deliveries verify."""
    data = make_resident().model_dump(mode="json") | {"full_name": DECOMPOSED}
    key, value = _signed(tmp_path, pki, data)
    decision = pipeline.decide(IngressRecord("xgw.ingress.police", 0, 0, key, value), NOW)
    assert decision.reason is None, decision.detail
    outputs = {out.topic: out.value for out in decision.outputs}
    receipt = json.loads(outputs["xgw.receipts.police"] or b"")
    assert receipt["data"]["status"] == "accepted"
    assert receipt["data"]["record_sha256"] == hashlib.sha256(value).hexdigest()
    land = AgencyClient(
        agency="land",
        signing_key=pki.keys["land"],
        trust=pki.trust,
        transport=MemoryTransport(),
        clock=lambda: NOW,
    )
    delivered = land.verify_delivery(outputs["xgw.deliver.land"] or b"")
    assert delivered.data.full_name == "Nguyễn Thị Minh Khai"  # type: ignore[attr-defined]
    assert unicodedata.is_normalized("NFC", delivered.data.full_name)  # type: ignore[attr-defined]
    assert delivered.source_agency == "police"
    assert key == json.loads(value)["subject"].encode()


def test_a_node_signed_event_changed_after_signing_is_refused(
    pki: Pki, pipeline: Pipeline, tmp_path: Path
) -> None:
    """The signer's output is bound to its bytes: another time is a bad signature."""
    key, value = _signed(tmp_path, pki, make_resident().model_dump(mode="json"))
    event = json.loads(value)
    event["time"] = event["time"].replace("Z", "+00:00")  # the same instant, other bytes
    changed = json.dumps(event, ensure_ascii=False).encode()
    decision = pipeline.decide(IngressRecord("xgw.ingress.police", 0, 0, key, changed), NOW)
    assert decision.reason is not None
    assert decision.reason.value == "bad_signature"
