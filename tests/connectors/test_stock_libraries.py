"""A delivery and a receipt verified with stock libraries only, as an agency integrator would.

joserfc (with its default registry plus the one critical parameter the stamp declares), rfc8785
and RFC 9162 recomputed here by hand: none of the gateway's own verification code is used.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from joserfc.registry import HeaderParameter

from connectors.client import AgencyClient
from connectors.transport import MemoryTransport
from gateway.core.pipeline import IngressRecord, Pipeline
from schemas.police import ResidentRegistered
from tests.conftest import NOW, Pki

STAMP_ATTRIBUTES = ("xgwstamp", "xgwstampproof")
# What the origin's signature does not cover (docs/envelope.md, "The origin signature").
UNSIGNED = {
    "xgwsig",
    "xgwdisclosures",
    "xgwrecipient",
    "xgwpurpose",
    "xgwlegalbasis",
    "xgwsignercert",
    *STAMP_ATTRIBUTES,
}


# The registry of an integrator who has read docs/envelope.md: the default one, plus the
# stamp's private parameter, which its header declares critical.
def _is_tree(value: object) -> None:
    if not isinstance(value, dict) or set(value) != {"tree", "size"}:
        raise ValueError('must be {"tree": ..., "size": n}')


STAMP_REGISTRY = jws.JWSRegistry(
    header_registry={"xgw": HeaderParameter("the stamp's hash tree", _is_tree)},
    algorithms=["Ed25519", "ES256"],
)
# joserfc caps a protected header at 512 bytes by default; the stamp's, carrying the gateway's
# certificate (x5c), is about 1 KiB (docs/integration.md says so).
STAMP_REGISTRY.max_header_length = 4096


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _root(leaf_data: bytes, proof: str) -> bytes:
    """RFC 9162 2.1.3.2, from the proof text of docs/envelope.md."""
    index, size, *hashes = proof.split(".")
    fn, sn = int(index), int(size) - 1
    r = hashlib.sha256(b"\x00" + leaf_data).digest()
    for p in map(_b64url_decode, hashes):
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def _key(certificate_b64: str) -> OKPKey | ECKey:
    certificate = x509.load_der_x509_certificate(base64.b64decode(certificate_b64))
    pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(certificate.public_key(), ed25519.Ed25519PublicKey):
        return OKPKey.import_key(pem)
    return ECKey.import_key(pem)


def _verify_stamp(event: dict[str, Any], registry: jws.JWSRegistry = STAMP_REGISTRY) -> None:
    """Verify the stamp with joserfc: the payload is the root the proof leads to."""
    token = event["xgwstamp"]
    protected, _, signature = token.split(".")
    header = json.loads(_b64url_decode(protected))
    unstamped = {k: v for k, v in event.items() if k not in STAMP_ATTRIBUTES}
    root = _root(rfc8785.dumps(unstamped), event["xgwstampproof"])
    attached = f"{protected}.{_b64url(root)}.{signature}"
    jws.deserialize_compact(attached, _key(header["x5c"][0]), registry=registry)


def _verify_origin(event: dict[str, Any]) -> dict[str, Any]:
    """Verify the origin signature and the disclosures; return the disclosed fields."""
    signed = {k: v for k, v in event.items() if k not in UNSIGNED}
    protected, _, signature = event["xgwsig"].split(".")
    attached = f"{protected}.{_b64url(rfc8785.dumps(signed))}.{signature}"
    registry = jws.JWSRegistry(algorithms=["Ed25519", "EdDSA", "ES256"])
    jws.deserialize_compact(attached, _key(event["xgwsignercert"]), registry=registry)
    digests = set(event["data"]["_sd"])
    fields = {}
    for disclosure in event["xgwdisclosures"].split("~"):
        assert _b64url(hashlib.sha256(disclosure.encode("ascii")).digest()) in digests
        _salt, name, value = json.loads(_b64url_decode(disclosure))
        fields[name] = value
    return fields


async def _delivered(pki: Pki, pipeline: Pipeline, resident: ResidentRegistered) -> Any:
    transport = MemoryTransport()
    police = AgencyClient(
        agency="police",
        signing_key=pki.keys["police"],
        trust=pki.trust,
        transport=transport,
        clock=lambda: NOW,
    )
    published = await police.publish(resident)
    decision = pipeline.decide(
        IngressRecord("xgw.ingress.police", 0, 0, published.subject.encode(), published.record),
        NOW,
    )
    return {out.topic: json.loads(out.value or b"{}") for out in decision.outputs}


async def test_a_delivery_and_a_receipt_verify_with_joserfc(
    pki: Pki, pipeline: Pipeline, resident: ResidentRegistered
) -> None:
    """Stamp, origin signature and disclosures verify with joserfc, rfc8785 and RFC 9162."""
    outputs = await _delivered(pki, pipeline, resident)
    land = outputs["xgw.deliver.land"]
    _verify_stamp(land)
    assert land["xgwrecipient"] == "land"
    assert set(_verify_origin(land)) == {"personal_id", "full_name"}
    receipt = outputs["xgw.receipts.police"]
    _verify_stamp(receipt)
    assert receipt["xgwrecipient"] == "police"


async def test_the_default_registry_refuses_the_stamp_for_its_critical_parameter(
    pki: Pki, pipeline: Pipeline, resident: ResidentRegistered
) -> None:
    """A library that does not know "xgw" refuses the stamp rather than ignore the tree size."""
    outputs = await _delivered(pki, pipeline, resident)
    default = jws.JWSRegistry(algorithms=["Ed25519"])
    default.max_header_length = STAMP_REGISTRY.max_header_length
    with pytest.raises(JoseError) as excinfo:
        _verify_stamp(outputs["xgw.deliver.land"], default)
    assert "xgw" in str(excinfo.value)


async def test_a_changed_byte_fails_stock_verification(
    pki: Pki, pipeline: Pipeline, resident: ResidentRegistered
) -> None:
    """The same checks refuse a delivery whose purpose was changed after stamping."""
    land = (await _delivered(pki, pipeline, resident))["xgw.deliver.land"]
    with pytest.raises(JoseError):
        _verify_stamp({**land, "xgwpurpose": land["xgwpurpose"] + "x"})
