"""Poison variants of one signed event: every string attribute, every JSON type, every position.

Shared by the pure tests (tests/gateway/core/test_poison.py) and the ones through the broker
(tests/system/test_poison.py), so both walk the same positions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gateway.core import envelope, profile
from gateway.wire.canonical import CanonicalisationError, canonical_bytes
from gateway.wire.jws import sign_detached
from gateway.wire.keys import SigningKey

STRING_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    profile.SIGNATURE,
    profile.DISCLOSURES,
)
WRONG_VALUES: tuple[Any, ...] = ({}, [], {"a": [1]}, 0, -1.5, 10**30, None, True, False, "")
SURROGATES = ("\\ud800", "\\udfff", "x\\ud83d", "\\ud83d\\u0041")


def resigned(event: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """``event`` signed again as is: only the gateway's other rules can refuse it.

    An event with no RFC 8785 form (a number beyond double precision) cannot be signed: as is.
    """
    signed = {k: v for k, v in event.items() if k not in profile.UNSIGNED_ATTRIBUTES}
    try:
        signature = sign_detached(canonical_bytes(signed), key)
    except CanonicalisationError:
        return event
    return {**event, profile.SIGNATURE: signature}


def with_surrogate(event: dict[str, Any], name: str, escape: str) -> bytes:
    """``event`` as JSON text whose attribute ``name`` is the lone-surrogate ``escape``."""
    text = json.dumps({k: ("@@" if k == name else v) for k, v in event.items()})
    return text.replace('"@@"', f'"{escape}"').encode()


def with_wrong_type(event: dict[str, Any], name: str, value: Any, key: SigningKey) -> bytes:
    """``event`` with attribute ``name`` set to ``value`` and signed again (but the signature)."""
    changed = {**event, name: value}
    if name != profile.SIGNATURE:
        changed = resigned(changed, key)
    return envelope.encode(changed)


def every_position(event: dict[str, Any], key: SigningKey) -> Iterator[tuple[str, bytes]]:
    """Every poison position of ``event``: (what was done, the record's value).

    A lone surrogate in every string attribute, every wrong JSON type at every attribute and
    as an ``_sd`` member.
    """
    for name in STRING_ATTRIBUTES:
        yield f"surrogate in {name}", with_surrogate(event, name, SURROGATES[0])
    for name in (*STRING_ATTRIBUTES, "data"):
        for value in WRONG_VALUES:
            yield f"{name} = {value!r}", with_wrong_type(event, name, value, key)
    for value in WRONG_VALUES:
        data = {**event["data"], "_sd": [*event["data"]["_sd"], value]}
        yield f"_sd member {value!r}", envelope.encode(resigned({**event, "data": data}, key))
