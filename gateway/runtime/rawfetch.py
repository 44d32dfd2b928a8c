"""Reading a partition's records as bytes, past what the Kafka client cannot decode.

aiokafka decodes every record header key as UTF-8 while it unpacks a fetched batch (its C and
its Python readers alike). A key that is not UTF-8, which any producer with write access to a
topic can send, raises ``UnicodeDecodeError`` out of ``getmany``; the consumer advances its
position only after a whole drain, so the next ``getmany`` fetches the same batch and raises on
the same record again, for ever. aiokafka offers no option or hook to skip such a record or to
read its bytes.

So the worker reads that partition itself: :func:`fetch_record_set` sends the consumer's own
request (a ``FetchRequest`` through an :class:`~aiokafka.client.AIOKafkaClient`) from the
consumer's position, and :func:`read_batches` unpacks the record batches (the v2 format of
KIP-98, the only one Kafka 3 writes) with header keys kept as bytes. :func:`ingress_records`
turns them into the pipeline's records; the worker decides them itself, valid ones as usual
and an undecodable one as a dead letter (``undecodable_record``), and seeks past them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from aiokafka import codec
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import calc_crc32c, decode_varint
from aiokafka.structs import TopicPartition

from gateway.core.pipeline import IngressRecord
from gateway.errors import BrokerError

RawHeaders = tuple[tuple[bytes, bytes | None], ...]

# RecordBatch v2: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8,
# crc uint32, attributes int16, lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64,
# producerId int64, producerEpoch int16, baseSequence int32, records count int32.
_BATCH = struct.Struct(">qiibIhiqqqhii")
_LENGTH_END = 12  # batchLength counts the bytes after baseOffset and itself
_CRC_FROM = 21  # the CRC covers everything from the attributes on
_MAGIC_AT = 16
_LAST_DELTA_AT = 23  # lastOffsetDelta, after baseOffset .. attributes
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_TRANSACTIONAL = 0x10
_CONTROL = 0x20
_READ_UNCOMMITTED = 0
_DECODERS: dict[int, Callable[[bytes], bytes]] = {
    1: codec.gzip_decode,
    2: codec.snappy_decode,
    3: codec.lz4_decode,
    4: codec.zstd_decode,
}


class RawReadError(ValueError):
    """The fetched bytes are not record batches this reader understands (or are corrupt)."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as stored, header keys as bytes."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: RawHeaders


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One record batch: its records, and the offset after it."""

    next_offset: int
    producer_id: int
    transactional: bool
    control: bool
    records: tuple[RawRecord, ...]


def _varint(buffer: bytearray, pos: int) -> tuple[int, int]:
    try:
        value, after = decode_varint(buffer, pos)
    except (IndexError, ValueError) as exc:
        raise RawReadError(f"a varint runs past the batch at byte {pos}") from exc
    return int(value), int(after)


def _bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    size, pos = _varint(buffer, pos)
    if size < 0:
        return None, pos
    if pos + size > len(buffer):
        raise RawReadError(f"a field of {size} bytes runs past the batch at byte {pos}")
    return bytes(buffer[pos : pos + size]), pos + size


def _records(
    body: bytearray, count: int, base_offset: int, base_time: int, log_time: int | None
) -> Iterator[RawRecord]:
    pos = 0
    for _ in range(count):
        length, pos = _varint(body, pos)
        start = pos
        pos += 1  # record attributes: unused
        time_delta, pos = _varint(body, pos)
        offset_delta, pos = _varint(body, pos)
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        header_count, pos = _varint(body, pos)
        if header_count < 0:
            raise RawReadError(f"a record claims {header_count} headers")
        headers = []
        for _ in range(header_count):
            name, pos = _bytes(body, pos)
            if name is None:
                raise RawReadError("a record header has a null key")
            header_value, pos = _bytes(body, pos)
            headers.append((name, header_value))
        if pos - start != length:
            raise RawReadError(f"a record of {length} bytes holds {pos - start}")
        timestamp = log_time if log_time is not None else base_time + time_delta
        yield RawRecord(base_offset + offset_delta, timestamp, key, value, tuple(headers))


def read_batches(data: bytes) -> list[RawBatch]:
    """The complete v2 record batches in a fetch response's record set, in order.

    A batch cut off at the end of ``data`` (the broker fills a fetch up to its size limit) is
    left out, as Kafka clients do. Raises :class:`RawReadError` for a batch of another format,
    a CRC that does not match, an unknown codec, or a record that runs past its batch.
    """
    view = memoryview(data)
    batches: list[RawBatch] = []
    pos = 0
    while pos + _BATCH.size <= len(view):
        base_offset, length = struct.unpack_from(">qi", view, pos)
        end = pos + _LENGTH_END + length
        if length < _BATCH.size - _LENGTH_END or end > len(view):
            break  # a partial batch at the end of the fetch
        if view[pos + _MAGIC_AT] != 2:  # noqa: PLR2004 - the v2 magic byte
            raise RawReadError(f"the batch at offset {base_offset} is not of record format v2")
        fields = _BATCH.unpack_from(view, pos)
        crc, attributes, first_time, max_time = fields[4], fields[5], fields[7], fields[8]
        producer_id, count = fields[9], fields[12]
        if calc_crc32c(bytes(view[pos + _CRC_FROM : end])) != crc:
            raise RawReadError(f"the batch at offset {base_offset} fails its CRC")
        body = bytes(view[pos + _BATCH.size : end])
        if attributes & _CODEC_MASK:
            decoder = _DECODERS.get(attributes & _CODEC_MASK)
            if decoder is None:
                raise RawReadError(f"the batch at offset {base_offset} has an unknown codec")
            try:
                body = decoder(body)
            except Exception as exc:  # each codec library raises its own errors
                raise RawReadError(
                    f"the batch at offset {base_offset} does not decompress: {exc!r}"[:300]
                ) from exc
        log_time = max_time if attributes & _LOG_APPEND_TIME else None
        records = tuple(_records(bytearray(body), count, base_offset, first_time, log_time))
        batches.append(
            RawBatch(
                next_offset=base_offset + fields[6] + 1,
                producer_id=producer_id,
                transactional=bool(attributes & _TRANSACTIONAL),
                control=bool(attributes & _CONTROL),
                records=records,
            )
        )
        pos = end
    return batches


def data_records(batches: Sequence[RawBatch], from_offset: int) -> list[RawRecord]:
    """The records at or after ``from_offset`` that are data (control batches left out)."""
    return [
        record
        for batch in batches
        if not batch.control
        for record in batch.records
        if record.offset >= from_offset
    ]


async def fetch_record_set(
    client: AIOKafkaClient,
    tp: TopicPartition,
    offset: int,
    *,
    max_bytes: int,
    max_wait_ms: int = 500,
) -> bytes:
    """The record set (record batches, as stored) of ``tp`` from ``offset``, read like a consumer.

    Read uncommitted, as the worker's consumer reads: a batch of an aborted transaction is
    returned like any other. The broker answers as soon as it holds a byte; ``max_wait_ms``
    bounds the wait at the end of the partition (some brokers answer nothing to a zero wait).
    """
    try:
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            await client.force_metadata_update()
            leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            raise BrokerError(f"no leader for {tp.topic}[{tp.partition}] to read from")
        partitions = [(tp.topic, [(tp.partition, offset, max_bytes)])]
        request = FetchRequest(max_wait_ms, 1, max_bytes, _READ_UNCOMMITTED, partitions)
        response = await client.send(leader, request)
    except KafkaError as exc:
        raise BrokerError(f"cannot read {tp.topic}[{tp.partition}] at {offset}: {exc!r}") from exc
    for _topic, partitions in response.topics:
        for _partition, error_code, _highwater, *rest in partitions:
            if error_code:
                raise BrokerError(
                    f"reading {tp.topic}[{tp.partition}] at {offset}: {for_code(error_code)}"
                )
            return bytes(rest[-1] or b"")
    return b""


def batch_span(data: bytes) -> tuple[int, int]:
    """The first and the next offset of the first batch in ``data``, from its header alone.

    For skipping a batch :func:`read_batches` refuses (a bad CRC, an unknown codec): the
    header's offsets are all that is left to go by. Raises :class:`RawReadError` when not even
    a header is there.
    """
    if len(data) < _LAST_DELTA_AT + 4:
        raise RawReadError("the fetched bytes hold no record batch header")
    base_offset = int.from_bytes(data[:8], "big", signed=True)
    last_delta = int.from_bytes(data[_LAST_DELTA_AT : _LAST_DELTA_AT + 4], "big", signed=True)
    return base_offset, base_offset + max(last_delta, 0) + 1


def ingress_records(
    tp: TopicPartition, data: bytes, offset: int
) -> tuple[list[IngressRecord], int]:
    """The ingress records of a fetched record set from ``offset``, and the offset after them.

    A record whose header names are not UTF-8 comes back with ``undecodable`` set (its names
    decoded with backslash escapes, so its dead letter can carry them). A batch this reader
    refuses becomes one undecodable record at its first offset, with no bytes, and is skipped.
    """
    try:
        batches = read_batches(data)
    except RawReadError as exc:
        first, after = batch_span(data)
        at = max(first, offset)
        return [IngressRecord(tp.topic, tp.partition, at, None, b"", undecodable=str(exc))], after
    records = data_records(batches, offset)
    after = max((b.next_offset for b in batches), default=offset)
    return [_ingress(tp, r) for r in records], max(after, offset)


def _ingress(tp: TopicPartition, record: RawRecord) -> IngressRecord:
    names: list[str] = []
    problem = ""
    for index, (name, _value) in enumerate(record.headers):
        try:
            names.append(name.decode("utf-8"))
        except UnicodeDecodeError:
            names.append(name.decode("utf-8", "backslashreplace"))
            problem = problem or f"the name of header {index} is not UTF-8"
    return IngressRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=tuple(
            (name, value or b"") for name, (_, value) in zip(names, record.headers, strict=True)
        ),
        timestamp_ms=record.timestamp_ms,
        undecodable=problem,
    )
