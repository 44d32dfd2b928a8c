"""The raw record reader: what aiokafka cannot decode, read as bytes; bad batches refused."""

from __future__ import annotations

import contextlib
import struct

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from hypothesis import given
from hypothesis import strategies as st

from gateway.runtime.rawfetch import RawReadError, data_records, read_batches

_CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


_Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]


def _batch(
    records: list[_Record],
    *,
    base_offset: int = 0,
    codec: int = 0,
) -> bytes:
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


def _with_crc(data: bytearray) -> bytes:
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


def _undecodable_header_batch() -> bytes:
    """A valid batch whose second record has a header key that is not UTF-8 (0xFF 0xFE)."""
    data = bytearray(
        _batch([(b"a", b"first", []), (b"b", b"second", [("XX", b"v")]), (None, b"third", [])])
    )
    at = data.index(b"XX")
    data[at : at + 2] = b"\xff\xfe"
    return _with_crc(data)


def test_aiokafka_itself_cannot_decode_the_record() -> None:
    """The reason this reader exists: the client's own reader raises on the header key."""
    batch = DefaultRecordBatch(bytearray(_undecodable_header_batch()))
    assert batch.validate_crc()
    with pytest.raises(UnicodeDecodeError):
        list(batch)


def test_a_header_key_that_is_not_utf8_is_read_as_bytes() -> None:
    """Every record of the batch is read, the undecodable key as its bytes."""
    (batch,) = read_batches(_undecodable_header_batch())
    assert [r.offset for r in batch.records] == [0, 1, 2]
    assert [r.value for r in batch.records] == [b"first", b"second", b"third"]
    assert batch.records[1].headers == ((b"\xff\xfe", b"v"),)
    assert batch.records[1].key == b"b"
    assert batch.records[2].key is None
    assert batch.records[1].timestamp_ms == 1_700_000_000_001
    assert batch.next_offset == 3


@pytest.mark.parametrize("codec", sorted(_CODECS))
def test_compressed_batches_are_read(codec: str) -> None:
    """Each codec Kafka producers use unpacks to the same records."""
    records: list[_Record] = [
        (b"k%d" % n, "Nguyễn Văn An, Thủ Đức".encode() * n, [("h", b"x")]) for n in range(5)
    ]
    (batch,) = read_batches(_batch(records, base_offset=40, codec=_CODECS[codec]))
    assert [(r.offset, r.key, r.value) for r in batch.records] == [
        (40 + n, k, v) for n, (k, v, _h) in enumerate(records)
    ]


def test_records_before_the_position_and_a_cut_off_batch_are_left_out() -> None:
    """The broker returns whole batches from before the position and cuts the last one."""
    first = _batch([(None, b"0", []), (None, b"1", []), (None, b"2", [])], base_offset=10)
    second = _batch([(None, b"3", [])], base_offset=13)
    batches = read_batches(first + second + second[:-5])
    assert [b.next_offset for b in batches] == [13, 14]
    assert [r.offset for r in data_records(batches, 12)] == [12, 13]


def test_a_corrupt_batch_is_refused() -> None:
    """A flipped byte fails the CRC; a record running past its batch is refused by name."""
    data = bytearray(_batch([(b"k", b"value", [])]))
    data[-2] ^= 0xFF
    with pytest.raises(RawReadError, match="CRC"):
        read_batches(bytes(data))
    lying = bytearray(_batch([(b"k", b"value", [])]))
    lying[lying.index(b"value") - 1] = 0x7E  # the value's length varint: 63 bytes
    with pytest.raises(RawReadError):
        read_batches(_with_crc(lying))


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=120))
def test_any_bytes_give_batches_or_a_read_error(noise: bytes, cut: int) -> None:
    """Whatever bytes a broker (or an attacker between it and us) returns, nothing else raises."""
    data = bytearray(_undecodable_header_batch())
    data[cut : cut + len(noise)] = noise
    for candidate in (bytes(data), _with_crc(bytearray(data)) if len(data) > 21 else b""):
        with contextlib.suppress(RawReadError):
            read_batches(candidate)
