"""Kafka record batches (format v2) built by hand, as a hostile producer could write them."""

from __future__ import annotations

import struct

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]


def batch(
    records: list[Record],
    *,
    base_offset: int = 0,
    codec: int = 0,
) -> bytes:
    """One batch of ``records`` (key, value, headers) at ``base_offset``, with ``codec``."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, (key, value, headers) in enumerate(records):
        builder.append(
            delta, timestamp=1_700_000_000_000 + delta, key=key, value=value, headers=headers
        )
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)
    return bytes(data)


def with_crc(data: bytearray) -> bytes:
    """``data`` with its batch CRC computed again."""
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


def undecodable_header_batch() -> bytes:
    """A valid batch whose second record has a header key that is not UTF-8 (0xFF 0xFE)."""
    data = bytearray(
        batch([(b"a", b"first", []), (b"b", b"second", [("XX", b"v")]), (None, b"third", [])])
    )
    at = data.index(b"XX")
    data[at : at + 2] = b"\xff\xfe"
    return with_crc(data)


def with_header_name(data: bytes, placeholder: bytes, name: bytes) -> bytes:
    """``data`` with the last record's header name ``placeholder`` replaced by ``name``.

    Headers end a record, so the last occurrence is the header's (the value may hold the same
    bytes). ``name`` has the length of ``placeholder``.
    """
    if len(placeholder) != len(name):
        raise ValueError("the new name must have the placeholder's length")
    patched = bytearray(data)
    at = patched.rindex(placeholder)
    patched[at : at + len(name)] = name
    return with_crc(patched)
