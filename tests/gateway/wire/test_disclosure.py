"""Selective disclosure with the RFC 9901 (SD-JWT) disclosure encoding."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given

from gateway.wire import b64url
from gateway.wire import disclosure as sd
from tests.support.strategies import event_data

# RFC 9901 example disclosure of given_name (its JSON uses ", " separators).
RFC_SALT = "2GLC42sKQveCfGfryNRN9w"
RFC_DISCLOSURE = "WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgImdpdmVuX25hbWUiLCAiSm9obiJd"
RFC_DIGEST = "jsu9yVulwQQlhFlM_3JlzMaSFzglhQG0DpfayQwLUK4"

SALT = "A" * 22  # exactly 128 bits in unpadded base64url


def _encode(array: Any) -> str:
    """Encode any JSON value the way a disclosure is encoded."""
    return b64url.encode(json.dumps(array).encode("utf-8"))


def test_rfc_example_parses() -> None:
    """The RFC's given_name disclosure decodes to its salt, name and value."""
    disclosure = sd.parse(RFC_DISCLOSURE)
    assert (disclosure.salt, disclosure.name, disclosure.value) == (RFC_SALT, "given_name", "John")
    assert disclosure.encoded == RFC_DISCLOSURE


def test_rfc_example_digest() -> None:
    """The RFC's given_name disclosure has the digest the RFC prints."""
    assert sd.digest_of(RFC_DISCLOSURE) == RFC_DIGEST
    assert sd.parse(RFC_DISCLOSURE).digest == RFC_DIGEST


def test_digest_is_base64url_of_sha256_over_the_ascii_text() -> None:
    """A disclosure's digest is base64url(SHA-256(ASCII(encoded disclosure)))."""
    disclosure = sd.make("full_name", "Nguyễn Thị Minh Khai")
    expected = b64url.encode(hashlib.sha256(disclosure.encoded.encode("ascii")).digest())
    assert disclosure.digest == expected


def test_make_encodes_salt_name_value_as_utf8_json() -> None:
    """A made disclosure is base64url of the UTF-8 JSON array [salt, name, value]."""
    disclosure = sd.make("full_name", "Trần Văn Đức", salt=SALT)
    assert json.loads(b64url.decode(disclosure.encoded).decode("utf-8")) == [
        SALT,
        "full_name",
        "Trần Văn Đức",
    ]
    assert sd.parse(disclosure.encoded) == disclosure


def test_make_draws_a_fresh_128_bit_salt() -> None:
    """Each disclosure gets a fresh random 16-byte salt, so equal values get unequal digests."""
    first, second = sd.make("sex", "female"), sd.make("sex", "female")
    assert len(b64url.decode(first.salt)) == 16
    assert first.salt != second.salt
    assert first.digest != second.digest


def test_conceal_gives_sorted_digests_and_one_disclosure_per_field() -> None:
    """The signed form holds only the sorted digests and the alg; each field has one disclosure."""
    data = {"personal_id": "079190012345", "full_name": "Nguyễn Thị Minh Khai", "sex": "female"}
    signed, disclosures = sd.conceal(data)
    assert set(signed) == {"_sd", "_sd_alg"}
    assert signed["_sd_alg"] == "sha-256"
    assert signed["_sd"] == sorted(signed["_sd"])
    assert sorted(d.digest for d in disclosures) == signed["_sd"]
    assert {d.name: d.value for d in disclosures} == data
    assert len(disclosures) == len(data)


def test_signed_form_reveals_no_value() -> None:
    """No field value appears in the signed form."""
    signed, _ = sd.conceal({"personal_id": "079190012345"})
    assert "079190012345" not in json.dumps(signed)


def test_reveal_returns_disclosures_by_name() -> None:
    """Every signed disclosure is returned under its field name."""
    signed, disclosures = sd.conceal({"personal_id": "079190012345", "sex": "female"})
    revealed = sd.reveal(signed, [d.encoded for d in disclosures])
    assert {name: d.value for name, d in revealed.items()} == {
        "personal_id": "079190012345",
        "sex": "female",
    }


def test_reveal_accepts_a_subset() -> None:
    """A recipient handed only some disclosures still checks them; withheld fields are absent."""
    signed, disclosures = sd.conceal({"personal_id": "079190012345", "sex": "female"})
    kept = [d.encoded for d in disclosures if d.name == "sex"]
    assert set(sd.reveal(signed, kept)) == {"sex"}
    assert sd.reveal(signed, []) == {}


def test_reveal_refuses_unsigned_disclosure() -> None:
    """A well-formed disclosure whose digest is not signed raises DisclosureMismatch."""
    signed, _ = sd.conceal({"sex": "female"})
    forged = sd.make("sex", "male")
    with pytest.raises(sd.DisclosureMismatch, match="sex"):
        sd.reveal(signed, [forged.encoded])


def test_reveal_refuses_changed_value_with_the_same_salt() -> None:
    """Re-encoding a signed disclosure with another value (same salt and name) is a mismatch."""
    signed, (original,) = sd.conceal({"sex": "female"})
    changed = sd.make("sex", "male", salt=original.salt)
    with pytest.raises(sd.DisclosureMismatch):
        sd.reveal(signed, [changed.encoded])


def test_reveal_refuses_the_same_disclosure_twice() -> None:
    """Sending one disclosure twice raises DuplicateDisclosure."""
    signed, (disclosure,) = sd.conceal({"sex": "female"})
    with pytest.raises(sd.DuplicateDisclosure):
        sd.reveal(signed, [disclosure.encoded, disclosure.encoded])


def test_reveal_refuses_two_signed_disclosures_of_one_name() -> None:
    """Two different signed disclosures for the same field name raise DuplicateDisclosure."""
    first, second = sd.make("sex", "female"), sd.make("sex", "male")
    signed = {"_sd": sorted([first.digest, second.digest]), "_sd_alg": "sha-256"}
    with pytest.raises(sd.DuplicateDisclosure, match="sex"):
        sd.reveal(signed, [first.encoded, second.encoded])


@pytest.mark.parametrize(
    "signed",
    [
        {},
        {"_sd": []},
        {"_sd": [], "_sd_alg": "sha-512"},
        {"_sd": "abc", "_sd_alg": "sha-256"},
        {"_sd_alg": "sha-256"},
    ],
)
def test_reveal_refuses_signed_data_without_sd_list(signed: dict[str, Any]) -> None:
    """Signed data without an _sd list and _sd_alg 'sha-256' raises DisclosureError."""
    with pytest.raises(sd.DisclosureError) as error:
        sd.reveal(signed, [])
    assert type(error.value) is sd.DisclosureError


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("not base64!", "not base64url"),
        (b64url.encode(b"\xff\xfe"), "not UTF-8 text"),
        (b64url.encode(b"[1, 2"), "not I-JSON"),
        (_encode({"salt": SALT, "name": "x", "value": 1}), "not a \\[salt, name, value\\]"),
        (_encode([SALT, "x"]), "not a \\[salt, name, value\\]"),
        (_encode([SALT, "x", 1, 2]), "not a \\[salt, name, value\\]"),
        (_encode(["A" * 21, "x", 1]), "salt"),
        (_encode([12345678901234567890123, "x", 1]), "salt"),
        (_encode([SALT, "", 1]), "name"),
        (_encode([SALT, 7, 1]), "name"),
        (_encode([SALT, "_sd", []]), "reserved"),
        (_encode([SALT, "_sd_alg", "sha-256"]), "reserved"),
        (_encode([SALT, "...", 1]), "reserved"),
    ],
)
def test_parse_refuses_malformed_disclosures(encoded: str, message: str) -> None:
    """Non-JSON, non-arrays, wrong lengths, short salts, missing or reserved names are refused."""
    with pytest.raises(sd.DisclosureError, match=message) as error:
        sd.parse(encoded)
    assert type(error.value) is sd.DisclosureError


def test_reveal_reports_malformed_disclosure_as_disclosure_error() -> None:
    """A malformed disclosure among valid ones raises DisclosureError, not a mismatch."""
    signed, (disclosure,) = sd.conceal({"sex": "female"})
    with pytest.raises(sd.DisclosureError) as error:
        sd.reveal(signed, [disclosure.encoded, _encode(["short", "x", 1])])
    assert type(error.value) is sd.DisclosureError


def test_salt_of_exactly_128_bits_is_accepted() -> None:
    """A salt of 22 base64url characters (128 bits) is long enough."""
    assert sd.parse(_encode([SALT, "x", 1])).salt == SALT


def test_split_and_join_round_trip() -> None:
    """Joined disclosures split back into the same texts, and empty text means none."""
    _, disclosures = sd.conceal({"a": 1, "b": "hai", "c": None})
    joined = sd.join(disclosures)
    assert joined.count("~") == 2
    assert sd.split(joined) == [d.encoded for d in disclosures]
    assert sd.split("") == []


@given(event_data)
def test_conceal_then_reveal_round_trips(data: dict[str, Any]) -> None:
    """Any event data, concealed, transmitted joined and revealed, gives back the same values."""
    signed, disclosures = sd.conceal(data)
    revealed = sd.reveal(signed, sd.split(sd.join(disclosures)))
    assert {name: d.value for name, d in revealed.items()} == data
    assert signed["_sd"] == sorted(signed["_sd"])


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1E+309"])
def test_parse_refuses_non_json_constants(constant: str) -> None:
    """A disclosure whose value is NaN, Infinity or a number beyond a double is refused."""
    encoded = b64url.encode(f'["{SALT}", "x", {constant}]'.encode("ascii"))
    with pytest.raises(sd.DisclosureError):
        sd.parse(encoded)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f'["{SALT}", "x", "Nguy\\ud800n"]'.encode(), "not I-JSON: the string at /2 holds"),
        (f'["{SALT}", "x", 1e400]'.encode(), "not I-JSON: a number is beyond"),
        (f'["{SALT}", "x", ]'.encode(), "not I-JSON: Expecting value"),
    ],
)
def test_parse_says_why_a_disclosure_is_not_json(text: bytes, why: str) -> None:
    """The reason names the layer that failed (text, I-JSON) and the place, never the value."""
    with pytest.raises(sd.DisclosureError, match=why) as refused:
        sd.parse(b64url.encode(text))
    assert "Nguy" not in str(refused.value)


def test_parse_refuses_a_disclosure_that_is_not_base64url() -> None:
    with pytest.raises(sd.DisclosureError, match="not base64url"):
        sd.parse("not base64url!")


def test_parse_refuses_duplicate_keys_in_value() -> None:
    """A disclosed object value with a repeated key is refused, as envelope.loads_strict does."""
    encoded = b64url.encode(f'["{SALT}", "x", {{"a": 1, "a": 2}}]'.encode("ascii"))
    with pytest.raises(sd.DisclosureError):
        sd.parse(encoded)


@given(event_data)
def test_make_writes_the_same_text_as_compact_json_dumps(data: dict[str, Any]) -> None:
    """A disclosure's text is json.dumps of [salt, name, value], compact, UTF-8 kept, in order."""
    for name, value in data.items():
        disclosure = sd.make(name, value, salt=SALT)
        expected = json.dumps([SALT, name, value], ensure_ascii=False, separators=(",", ":"))
        assert b64url.decode(disclosure.encoded) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "member",
    [
        {"digest": "x"},
        ["a"],
        7,
        1.5,
        True,
        None,
        "",
        "A" * 42,  # one character short of a SHA-256 digest
        "A" * 44,
        "A" * 42 + "B",  # 43 characters, but not the canonical encoding of 32 bytes
        "+" * 43,  # base64, not base64url
        "Nguyễn" * 7 + "A",
    ],
)
def test_every_sd_member_must_be_a_sha256_digest(member: object) -> None:
    """An _sd member of another type or form is malformed, never a crash or a match."""
    signed, disclosures = sd.conceal({"full_name": "Nguyễn Văn An"})
    tampered = {**signed, "_sd": [*signed["_sd"], member]}
    with pytest.raises(sd.DisclosureError, match=r"_sd\[1\]"):
        sd.reveal(tampered, [d.encoded for d in disclosures])


def test_a_digest_listed_twice_is_malformed() -> None:
    """The signed digests are a set: one listed twice is refused."""
    signed, disclosures = sd.conceal({"full_name": "Nguyễn Văn An"})
    twice = {**signed, "_sd": signed["_sd"] * 2}
    with pytest.raises(sd.DisclosureError, match="twice"):
        sd.reveal(twice, [d.encoded for d in disclosures])
