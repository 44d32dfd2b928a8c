"""Detached compact JWS of this profile (RFC 7515 appendix F; algs EdDSA and ES256 only)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.wire import b64url
from gateway.wire.canonical import canonical_bytes
from gateway.wire.jws import JwsError, parse_detached, sign_detached
from gateway.wire.keys import SigningKey

ALGS = ["Ed25519", "ES256"]
PAYLOAD = b'{"id":"e-1","subject":"s"}'


@pytest.fixture(scope="module", params=ALGS)
def key(request: pytest.FixtureRequest) -> SigningKey:
    """One signing key per supported algorithm."""
    return SigningKey.generate(request.param)


def _token(header: Any, signature: bytes = b"\x00" * 64) -> str:
    """A detached token with ``header`` as its protected header, signed by nobody."""
    protected = b64url.encode(json.dumps(header).encode("utf-8"))
    return f"{protected}..{b64url.encode(signature)}"


def test_token_is_header_dot_dot_signature(key: SigningKey) -> None:
    """A signed token has three segments and an empty payload segment."""
    protected, payload, signature = sign_detached(PAYLOAD, key).split(".")
    assert payload == ""
    assert protected
    assert len(b64url.decode(signature)) == 64


def test_protected_header_is_canonical_alg_and_kid(key: SigningKey) -> None:
    """The protected header is the RFC 8785 form of exactly alg and kid."""
    protected = sign_detached(PAYLOAD, key).split(".")[0]
    expected = canonical_bytes({"alg": key.alg, "kid": key.kid})
    assert b64url.decode(protected) == expected


def test_signed_token_parses_and_verifies(key: SigningKey) -> None:
    """A token parses back to its header and verifies over the same payload bytes."""
    jws = parse_detached(sign_detached(PAYLOAD, key))
    assert jws.header == {"alg": key.alg, "kid": key.kid}
    assert jws.kid == key.kid
    assert jws.verify(PAYLOAD, key.verification_key)


def test_signing_input_is_rfc7515_form(key: SigningKey) -> None:
    """The signed bytes are ASCII(protected '.' BASE64URL(payload))."""
    token = sign_detached(PAYLOAD, key)
    jws = parse_detached(token)
    expected = f"{token.split('.')[0]}.{b64url.encode(PAYLOAD)}".encode("ascii")
    assert jws.signing_input(PAYLOAD) == expected
    assert key.verification_key.verify(jws.signature, expected)


def test_extra_header_is_protected(key: SigningKey) -> None:
    """Extra known parameters land in the protected header and are covered by the signature."""
    jws = parse_detached(sign_detached(PAYLOAD, key, {"typ": "xgw-stamp", "xgw": {"to": "land"}}))
    assert jws.header["typ"] == "xgw-stamp"
    assert jws.header["xgw"] == {"to": "land"}
    assert jws.verify(PAYLOAD, key.verification_key)


def test_signature_does_not_verify_over_other_payload(key: SigningKey) -> None:
    """A token refuses payload bytes other than the ones signed, even a one-byte change."""
    jws = parse_detached(sign_detached(PAYLOAD, key))
    assert not jws.verify(PAYLOAD.replace(b"e-1", b"e-2"), key.verification_key)
    assert not jws.verify(b"", key.verification_key)


def test_signature_does_not_verify_with_another_key(key: SigningKey) -> None:
    """A token refuses the verification key of another key pair with the same alg."""
    other = SigningKey.generate(key.alg)
    jws = parse_detached(sign_detached(PAYLOAD, key))
    assert not jws.verify(PAYLOAD, other.verification_key)


def test_changed_protected_header_breaks_the_signature(key: SigningKey) -> None:
    """Swapping in another protected header (here one with typ added) invalidates the signature."""
    token = sign_detached(PAYLOAD, key)
    forged_header = b64url.encode(canonical_bytes({"alg": key.alg, "kid": key.kid, "typ": "x"}))
    forged = parse_detached(f"{forged_header}..{token.split('..')[1]}")
    assert not forged.verify(PAYLOAD, key.verification_key)


def test_alg_mismatch_between_header_and_key_fails() -> None:
    """A valid ES256 signature is refused when the header claims EdDSA for that ES256 key."""
    key = SigningKey.generate("ES256")
    protected = b64url.encode(canonical_bytes({"alg": "EdDSA", "kid": key.kid}))
    signature = key.sign(f"{protected}.{b64url.encode(PAYLOAD)}".encode("ascii"))
    jws = parse_detached(f"{protected}..{b64url.encode(signature)}")
    assert key.verification_key.verify(signature, jws.signing_input(PAYLOAD))
    assert not jws.verify(PAYLOAD, key.verification_key)


def test_verifying_with_a_key_of_the_other_alg_fails() -> None:
    """An EdDSA token is refused by an ES256 key, and the other way round."""
    ed, es = SigningKey.generate("Ed25519"), SigningKey.generate("ES256")
    assert not parse_detached(sign_detached(PAYLOAD, ed)).verify(PAYLOAD, es.verification_key)
    assert not parse_detached(sign_detached(PAYLOAD, es)).verify(PAYLOAD, ed.verification_key)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "abc..",
        "a.b",
        "a..b..c",
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImsifQ.UEFZTE9BRA.AAAA",  # payload attached
    ],
)
def test_refuses_tokens_not_in_detached_form(token: str) -> None:
    """Anything but 'header..signature' is refused."""
    with pytest.raises(JwsError):
        parse_detached(token)


def test_crit_may_declare_the_profile_extension() -> None:
    """RFC 7515 4.1.11: "crit" naming "xgw", which the header carries, is understood."""
    jws = parse_detached(_token({"alg": "Ed25519", "kid": "k", "crit": ["xgw"], "xgw": {}}))
    assert jws.header["crit"] == ["xgw"]


@pytest.mark.parametrize(
    ("crit", "why"),
    [
        (["iat"], "does not understand"),  # a registered name, never an extension
        (["b64"], "does not understand"),  # RFC 7797, not of this profile
        (["xgw", "xgw"], "distinct"),
        ([], "non-empty"),
        ("xgw", "non-empty list"),
        ([1], "distinct parameter names"),
        (None, "non-empty list"),
    ],
)
def test_refuses_crit_outside_the_profile(crit: object, why: str) -> None:
    """Crit naming anything but this profile's extension, or malformed, is refused."""
    with pytest.raises(JwsError, match=why):
        parse_detached(_token({"alg": "Ed25519", "kid": "k", "crit": crit, "xgw": {}, "iat": 1}))


def test_refuses_crit_naming_an_absent_parameter() -> None:
    """Crit must not name a parameter the header does not carry."""
    with pytest.raises(JwsError, match="does not carry"):
        parse_detached(_token({"alg": "Ed25519", "kid": "k", "crit": ["xgw"]}))


def test_ed25519_keys_sign_with_the_fully_specified_name() -> None:
    """RFC 9864: Ed25519 keys emit alg "Ed25519", never the polymorphic "EdDSA"."""
    key = SigningKey.generate("Ed25519")
    jws = parse_detached(sign_detached(PAYLOAD, key))
    assert key.alg == jws.header["alg"] == "Ed25519"
    assert jws.verify(PAYLOAD, key.verification_key)


def test_legacy_eddsa_header_still_verifies_under_an_ed25519_key() -> None:
    """The transition: a publisher's "EdDSA" token verifies under its Ed25519 key, not ES256."""
    key, other = SigningKey.generate("Ed25519"), SigningKey.generate("ES256")
    protected = b64url.encode(canonical_bytes({"alg": "EdDSA", "kid": key.kid}))
    signature = key.sign(f"{protected}.{b64url.encode(PAYLOAD)}".encode("ascii"))
    jws = parse_detached(f"{protected}..{b64url.encode(signature)}")
    assert jws.verify(PAYLOAD, key.verification_key)
    assert not jws.verify(PAYLOAD, other.verification_key)


@pytest.mark.parametrize("name", ["jku", "jwk", "x5u", "b64", "zip", "enc"])
def test_refuses_unknown_header_parameters(name: str) -> None:
    """A header parameter outside the profile is refused and named in the error."""
    with pytest.raises(JwsError, match=name):
        parse_detached(_token({"alg": "EdDSA", "kid": "k", name: "x"}))


@pytest.mark.parametrize(
    "alg", ["none", "None", "HS256", "RS256", "ES384", "eddsa", "ed25519", "Ed448", None, 1]
)
def test_refuses_algorithms_outside_the_profile(alg: object) -> None:
    """Only Ed25519, EdDSA and ES256 are accepted; 'none', HMAC and other algs are refused."""
    with pytest.raises(JwsError, match="alg must be one of"):
        parse_detached(_token({"alg": alg, "kid": "k"}))


def test_refuses_missing_alg() -> None:
    """A header without alg is refused."""
    with pytest.raises(JwsError, match="alg must be one of"):
        parse_detached(_token({"kid": "k"}))


@pytest.mark.parametrize(
    "header", [{"alg": "EdDSA"}, {"alg": "EdDSA", "kid": ""}, {"alg": "EdDSA", "kid": 7}]
)
def test_refuses_missing_or_empty_kid(header: dict[str, Any]) -> None:
    """A header whose kid is missing, empty or not a string is refused."""
    with pytest.raises(JwsError, match="no kid"):
        parse_detached(_token(header))


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImsifQ==..AAAA",  # padded header
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImsifQ..AA+/",  # standard-alphabet signature
        "eyJhbGciOiJFZERTQSIs ImtpZCI6ImsifQ..AAAA",  # space inside the header
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImsifQ..AAAAA",  # impossible signature length
    ],
)
def test_refuses_non_base64url_segments(token: str) -> None:
    """Header or signature segments that are not unpadded base64url are refused."""
    with pytest.raises(JwsError, match="not valid base64url JSON"):
        parse_detached(token)


@pytest.mark.parametrize("protected", [b"not json", b"\xff\xfe{}", b""])
def test_refuses_header_that_is_not_json(protected: bytes) -> None:
    """A protected header that is not UTF-8 JSON is refused."""
    with pytest.raises(JwsError, match="not valid base64url JSON"):
        parse_detached(f"{b64url.encode(protected)}..AAAA")


@pytest.mark.parametrize("header", [["alg", "EdDSA"], "EdDSA", 1, None])
def test_refuses_header_that_is_not_an_object(header: object) -> None:
    """A protected header that is JSON but not an object is refused."""
    with pytest.raises(JwsError, match="not a JSON object"):
        parse_detached(_token(header))


def test_refuses_deeply_nested_header() -> None:
    """A header of thousands of nested arrays is refused with JwsError, not RecursionError."""
    with pytest.raises(JwsError):
        parse_detached(f"{b64url.encode(b'[' * 5000)}..AAAA")


def test_eddsa_tokens_are_deterministic_and_equal_to_cryptography_signatures() -> None:
    """Two EdDSA tokens over one payload are identical, and their signature is cryptography's."""
    key = SigningKey.generate("Ed25519")
    first = sign_detached(PAYLOAD, key, {"typ": "xgw-stamp+jws"})
    assert sign_detached(PAYLOAD, key, {"typ": "xgw-stamp+jws"}) == first
    jws = parse_detached(first)
    private = key.private_key
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert jws.signature == private.sign(jws.signing_input(PAYLOAD))


def test_extra_header_can_override_key_parameters(key: SigningKey) -> None:
    """Extra parameters win over the key's own, as before the header was cached."""
    jws = parse_detached(sign_detached(PAYLOAD, key, {"kid": "other"}))
    assert jws.header == {"alg": key.alg, "kid": "other"}
    assert parse_detached(sign_detached(PAYLOAD, key)).kid == key.kid
