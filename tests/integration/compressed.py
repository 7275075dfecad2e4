"""Compressed record batches from independent clients, and what the broker's log holds.

librdkafka (confluent-kafka) and the Java kafka-clients producer (``tests/java/
CompressedProducer.java``) each write with ``compression.type`` set, as agency systems
do; :func:`codec_of_values` reads the log raw to show which codec each message's record
batch really has (librdkafka sends a batch uncompressed when compressing does not pay).
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from confluent_kafka import KafkaError, Message, Producer

from tests.integration import java_client
from xborder.settings import Settings
from xborder.undecodable import CODECS

CompressedMessage = tuple[str, str, bytes, bytes]
"""(codec, topic, key, value)"""
JAVA_SOURCE = Path(__file__).resolve().parents[1] / "java" / "CompressedProducer.java"


def produce_librdkafka(
    bootstrap: str, messages: Sequence[CompressedMessage], partition: int = -1
) -> None:
    """Send ``messages``, one librdkafka producer per codec, to ``partition`` (-1: the
    key's); raise on any failed delivery."""
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"{message.topic()}: {error}")

    for codec in dict.fromkeys(m[0] for m in messages):
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "compression.type": codec,
                "linger.ms": 50,
                "acks": "all",
            }
        )
        for _, topic, key, value in (m for m in messages if m[0] == codec):
            producer.produce(
                topic, key=key, value=value, partition=partition, on_delivery=delivered
            )
        remaining = producer.flush(30)
        assert remaining == 0, f"{remaining} {codec} messages not delivered"
    assert not failures, failures


def produce_java(settings: Settings, messages: Sequence[CompressedMessage]) -> None:
    """Send ``messages`` with the Java producer (one producer per codec)."""
    with tempfile.TemporaryDirectory() as work:
        lines = Path(work) / "messages.tsv"
        lines.write_text("".join(f"{c}\t{t}\t{k.decode()}\t{v.hex()}\n" for c, t, k, v in messages))
        result = subprocess.run(
            ["java", "-cp", java_client.classpath(settings), str(JAVA_SOURCE),
             settings.kafka.bootstrap_servers, str(lines)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, f"CompressedProducer failed:\n{result.stderr[-3000:]}"
    assert result.stdout.strip().endswith(f"sent {len(messages)}"), result.stdout


def codec_of_values(bootstrap: str, topics: Sequence[str]) -> dict[bytes, str]:
    """Every message value in ``topics`` (read raw from offset 0) -> the codec of its
    record batch in the broker's log."""
    return asyncio.run(_codec_of_values(bootstrap, topics))


async def _codec_of_values(bootstrap: str, topics: Sequence[str]) -> dict[bytes, str]:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="test-codec-scan")
    await client.bootstrap()
    try:
        cluster = await client.fetch_all_metadata()
        wanted: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for topic in topics:
            for partition in cluster.partitions_for_topic(topic) or ():
                leader = cluster.leader_for_partition(TopicPartition(topic, partition))
                wanted[leader][topic].append((partition, 0, 16 * 1024 * 1024))
        found: dict[bytes, str] = {}
        for leader, by_topic in wanted.items():
            request = FetchRequest(0, 1, 64 * 1024 * 1024, 0, list(by_topic.items()))
            response = await client.send(leader, request)
            for _, partitions in response.topics:
                for _, error_code, _, *data in partitions:
                    assert error_code == 0, error_code
                    records = MemoryRecords(data[-1])
                    while records.has_next():
                        batch = records.next_batch()
                        codec = CODECS[batch.attributes & 0x07]
                        for record in batch:
                            found[bytes(record.value)] = codec
        return found
    finally:
        await client.close()
