"""Rebuilding a correlation partition from recorded offsets: the messages come back from
the topic in order, values of earlier releases (the messages themselves) still replay,
and offsets the topic no longer has are counted, not waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from streams.flows.correlate import encode_blocks, pack_applied
from streams.flows.replay import BlocksReplay, applied_offsets


def _topic(offsets: range, gone_below: int = 0) -> dict[int, bytes]:
    """A partition's messages by offset; retention removed those below ``gone_below``."""
    return {o: encode_blocks({"src[0]": o}, []) for o in offsets if o >= gone_below}


def _reader(log: dict[int, bytes], reads: list[int]):
    async def read(partition: int, first: int) -> AsyncIterator[tuple[int, bytes | None]]:
        reads.append(first)
        for offset in sorted(log):
            if offset >= first:
                yield offset, log[offset]

    return read


def _replay(
    values: list[bytes], log: dict[int, bytes]
) -> tuple[list[int], BlocksReplay, list[int]]:
    reads: list[int] = []
    replay = BlocksReplay(_reader(log, reads), partition=0)

    async def run() -> list[int]:
        seen = []
        for value in values:
            seen += [message["s"]["src[0]"] for message in await replay.messages(value)]
        await replay.close()
        return seen

    return asyncio.run(run()), replay, reads


def test_recorded_offsets_are_read_back_in_one_pass_skipping_what_was_not_applied() -> None:
    log = _topic(range(100, 120))
    values = [applied_offsets([100, 101, 103]), applied_offsets([104, 110]), applied_offsets([119])]
    seen, replay, reads = _replay(values, log)
    assert seen == [100, 101, 103, 104, 110, 119]
    assert reads == [100]  # one reader from the first recorded offset on
    assert replay.missing == 0


def test_values_of_earlier_releases_hold_the_messages_and_replay_as_they_are() -> None:
    old = pack_applied([encode_blocks({"src[0]": 1}, []), encode_blocks({"src[0]": 2}, [])])
    single = encode_blocks({"src[0]": 3}, [])
    seen, _, reads = _replay([old, single, applied_offsets([7])], _topic(range(5, 9)))
    assert seen == [1, 2, 3, 7]
    assert reads == [7]


def test_offsets_gone_from_the_topic_are_counted_and_the_rest_replays() -> None:
    log = _topic(range(0, 30), gone_below=12)  # retention removed 0..11
    values = [applied_offsets([3, 8]), applied_offsets([11, 12, 20]), applied_offsets([40])]
    seen, replay, _ = _replay(values, log)
    assert seen == [12, 20]
    assert replay.missing == 4  # 3, 8, 11 before the log start, 40 past its end


def test_an_applied_offsets_value_is_small() -> None:
    value = applied_offsets(list(range(10_000_000, 10_000_200)))
    assert orjson.loads(value) == {"o": list(range(10_000_000, 10_000_200))}
    assert len(value) < 2_000
