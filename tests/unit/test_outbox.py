"""The outbox's partitioner agrees with Kafka's default partitioner."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams.flows.outbox import default_partition, murmur2


def test_murmur2_matches_javas_known_values() -> None:
    # values of org.apache.kafka.common.utils.Utils.murmur2 (Java's signed int, as unsigned)
    assert murmur2(b"21") == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == (-985981536) & 0xFFFFFFFF
    assert murmur2(b"") == 275646681


@pytest.mark.parametrize("length", range(0, 41))
def test_murmur2_equals_aiokafkas_for_every_tail_length(length: int) -> None:
    rng = random.Random(length)
    for _ in range(50):
        key = rng.randbytes(length)
        assert murmur2(key) == aiokafka_murmur2(key)


def test_default_partition_is_the_positive_hash_modulo_the_partitions() -> None:
    key = b"CANTHO-20260302-000001"
    partitions = [0, 1, 2, 3, 4, 5]
    assert default_partition(key, partitions) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % 6
