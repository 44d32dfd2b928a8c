"""The raw record reader: what aiokafka cannot decode, read as bytes; bad batches refused."""

from __future__ import annotations

import contextlib

import pytest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from gateway.runtime.rawfetch import (
    RawReadError,
    batch_span,
    data_records,
    ingress_records,
    read_batches,
)
from tests.support.batches import CODECS, Record, undecodable_header_batch, with_crc
from tests.support.batches import batch as make_batch


def test_aiokafka_itself_cannot_decode_the_record() -> None:
    """The reason this reader exists: the client's own reader raises on the header key."""
    batch = DefaultRecordBatch(bytearray(undecodable_header_batch()))
    assert batch.validate_crc()
    with pytest.raises(UnicodeDecodeError):
        list(batch)


def test_a_header_key_that_is_not_utf8_is_read_as_bytes() -> None:
    """Every record of the batch is read, the undecodable key as its bytes."""
    (batch,) = read_batches(undecodable_header_batch())
    assert [r.offset for r in batch.records] == [0, 1, 2]
    assert [r.value for r in batch.records] == [b"first", b"second", b"third"]
    assert batch.records[1].headers == ((b"\xff\xfe", b"v"),)
    assert batch.records[1].key == b"b"
    assert batch.records[2].key is None
    assert batch.records[1].timestamp_ms == 1_700_000_000_001
    assert batch.next_offset == 3


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_batches_are_read(codec: str) -> None:
    """Each codec Kafka producers use unpacks to the same records."""
    records: list[Record] = [
        (b"k%d" % n, "Nguyễn Văn An, Thủ Đức".encode() * n, [("h", b"x")]) for n in range(5)
    ]
    (batch,) = read_batches(make_batch(records, base_offset=40, codec=CODECS[codec]))
    assert [(r.offset, r.key, r.value) for r in batch.records] == [
        (40 + n, k, v) for n, (k, v, _h) in enumerate(records)
    ]


def test_records_before_the_position_and_a_cut_off_batch_are_left_out() -> None:
    """The broker returns whole batches from before the position and cuts the last one."""
    first = make_batch([(None, b"0", []), (None, b"1", []), (None, b"2", [])], base_offset=10)
    second = make_batch([(None, b"3", [])], base_offset=13)
    batches = read_batches(first + second + second[:-5])
    assert [b.next_offset for b in batches] == [13, 14]
    assert [r.offset for r in data_records(batches, 12)] == [12, 13]


def test_a_corrupt_batch_is_refused() -> None:
    """A flipped byte fails the CRC; a record running past its batch is refused by name."""
    data = bytearray(make_batch([(b"k", b"value", [])]))
    data[-2] ^= 0xFF
    with pytest.raises(RawReadError, match="CRC"):
        read_batches(bytes(data))
    lying = bytearray(make_batch([(b"k", b"value", [])]))
    lying[lying.index(b"value") - 1] = 0x7E  # the value's length varint: 63 bytes
    with pytest.raises(RawReadError):
        read_batches(with_crc(lying))


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=120))
def test_any_bytes_give_batches_or_a_read_error(noise: bytes, cut: int) -> None:
    """Whatever bytes a broker (or an attacker between it and us) returns, nothing else raises."""
    data = bytearray(undecodable_header_batch())
    data[cut : cut + len(noise)] = noise
    for candidate in (bytes(data), with_crc(bytearray(data)) if len(data) > 21 else b""):
        with contextlib.suppress(RawReadError):
            read_batches(candidate)


TP = TopicPartition("xgw.ingress.police", 3)


def test_ingress_records_mark_the_undecodable_one_and_keep_the_others() -> None:
    """The worker's records from raw bytes: the bad header name escaped, the record marked."""
    records, after = ingress_records(TP, undecodable_header_batch(), 1)
    assert [(r.offset, r.value, r.undecodable) for r in records] == [
        (1, b"second", "the name of header 0 is not UTF-8"),
        (2, b"third", ""),
    ]
    assert records[0].headers == (("\\xff\\xfe", b"v"),)
    assert (records[0].topic, records[0].partition, after) == (TP.topic, 3, 3)


def test_a_batch_the_reader_refuses_becomes_one_undecodable_record_and_is_skipped() -> None:
    """A bad CRC: nothing of the batch can be trusted, so it is dead-lettered whole, by offset."""
    data = bytearray(make_batch([(b"k", b"a", []), (b"k", b"b", [])], base_offset=40))
    data[-1] ^= 0xFF
    (record,), after = ingress_records(TP, bytes(data), 40)
    assert (record.offset, record.value, after) == (40, b"", 42)
    assert "CRC" in record.undecodable
    assert batch_span(bytes(data)) == (40, 42)


def test_no_batch_header_is_a_read_error() -> None:
    with pytest.raises(RawReadError):
        batch_span(b"\x00" * 10)
