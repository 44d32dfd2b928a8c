"""Ids of the gateway's own records: the hot-path uuid5 equals the standard library's."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.records import uuid5_text


@given(st.uuids(), st.text())
def test_uuid5_text_equals_uuid_uuid5(namespace: uuid.UUID, name: str) -> None:
    """Any namespace and name agree; a name UTF-8 cannot encode is refused by both."""
    try:
        expected = str(uuid.uuid5(namespace, name))
    except UnicodeEncodeError:  # a lone surrogate: ours must refuse it too
        with pytest.raises(UnicodeEncodeError):
            uuid5_text(namespace.bytes, name)
        return
    assert uuid5_text(namespace.bytes, name) == expected


def test_uuid5_text_of_vietnamese_name() -> None:
    """A fixed example, so a change of encoding cannot pass unnoticed."""
    namespace = uuid.UUID("1b0f6c52-3f55-5a3e-9d44-6c2b3e0a7a01")
    name = "Nguyễn Văn Bình/Phường Bến Nghé"
    assert uuid5_text(namespace.bytes, name) == str(uuid.uuid5(namespace, name))
