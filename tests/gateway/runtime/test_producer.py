"""The gateway's murmur2 is Kafka's: equal to aiokafka's reference on any key."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference
from hypothesis import given
from hypothesis import strategies as st

from gateway.runtime.producer import CachedPartitioner, murmur2


@given(st.binary(max_size=200))
def test_equals_aiokafka_on_any_bytes(data: bytes) -> None:
    """Every length (each tail of 0-3 bytes) and every byte value hash alike."""
    assert murmur2(data) == reference(data)


def test_known_kafka_values() -> None:
    """Values of the Java client's murmur2 (kafka-clients UtilsTest), as unsigned 32-bit ints."""
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF


def test_subject_key_in_vietnamese() -> None:
    """UTF-8 keys with diacritics hash as their bytes."""
    key = "Nguyễn Thị Bình, Phường Bến Nghé".encode()
    assert murmur2(key) == reference(key)


def test_cached_partitioner_agrees_with_aiokafkas() -> None:
    """Remembering key hashes never changes the partition a key goes to."""
    cached = CachedPartitioner(size=3)
    for n in range(50):
        key = f"sha256:Nguyễn-{n % 7}".encode()
        partitions = list(range(1 + n % 5))
        assert cached(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
