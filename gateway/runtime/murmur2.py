"""Kafka's default key hash (murmur2, as in the Java client's ``Utils.murmur2``), word at a time.

aiokafka's own ``murmur2`` works byte by byte in Python; this one reads the key as little-endian
32-bit words in one ``struct`` call and is about four times faster on 36-byte keys (event ids),
which matters because every output record of the gateway is partitioned by its key. The
property tests hold it equal to aiokafka's on any bytes.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of ``data``, the value ``aiokafka.partitioner.murmur2`` returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    for word in struct.unpack_from(f"<{words}I", data):
        k = (word * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = words << 2
    extra = length & 3
    if extra:
        if extra == 3:  # noqa: PLR2004 - three bytes left over
            h ^= data[tail + 2] << 16
        if extra >= 2:  # noqa: PLR2004 - two or more bytes left over
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h
