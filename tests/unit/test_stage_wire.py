"""The stage batches' wire: packed table values and links messages stay under the size
limit, split where they must, and read back as the messages and records they hold."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from streams.correlation.engine import Correlator
from streams.correlation.model import to_wire
from streams.flows.correlate import (
    chunk_applied,
    decode_blocks,
    decode_links,
    encode_blocks,
    encode_links,
    split_blocks,
    unpack_applied,
)
from tests.unit.test_correlation_engine import CONFIG, generated, items, run
from tests.unit.test_correlation_support import codec


def _events(payloads: list[bytes | None]) -> list[Any]:
    return [
        SimpleNamespace(message=SimpleNamespace(value=value, offset=100 + n))
        for n, value in enumerate(payloads)
    ]


def test_applied_messages_pack_into_values_under_the_limit_in_order() -> None:
    payloads = [encode_blocks({"src[0]": n}, [["t:x", [n] * 40]]) for n in range(50)]
    events = _events([*payloads[:10], None, *payloads[10:]])
    chunks = chunk_applied(events, max_bytes=2_000)
    assert len(chunks) > 1
    assert all(len(value) <= 2_000 + 20 for _, value in chunks)
    unpacked = [message for _, value in chunks for message in unpack_applied(value)]
    assert unpacked == [orjson.loads(p) for p in payloads]  # the empty message is skipped
    # each value is keyed by the offset of the last message it holds
    offsets = [last.message.offset for last, _ in chunks]
    assert offsets == sorted(offsets) and offsets[-1] == events[-1].message.offset


def test_a_value_stored_before_stage_batches_still_unpacks() -> None:
    single = encode_blocks({"src[0]": 7}, [])
    assert unpack_applied(single) == [orjson.loads(single)]


def test_links_split_under_the_limit_and_the_last_carries_the_watermarks() -> None:
    views = generated(2000)
    out = run(Correlator(CONFIG), items(*views))
    assert len(out.correlations) > 5
    by_ref = {v.ref: to_wire(v) for v in views}
    real = codec()
    watermarks = {0: 1_000, 3: None}

    whole = encode_links(real, watermarks, out.correlations, by_ref)
    split = encode_links(real, watermarks, out.correlations, by_ref, max_bytes=2_500)
    assert len(whole) == 1 and len(split) > 2
    assert all(len(message) <= 2_500 + 1_500 for message in split)  # one record may overrun

    decoded = [decode_links(real, message) for message in split]
    assert [w for w, _, _ in decoded] == [{}] * (len(split) - 1) + [watermarks]
    records = [r["correlation_id"] for _, rs, _ in decoded for r in rs]
    assert records == [c["correlation_id"] for c in out.correlations]
    for _, rs, message_views in decoded:  # every record travels with both incidents' views
        for r in rs:
            for side in ("incident_a", "incident_b"):
                assert (r[side]["agency"], r[side]["incident_id"]) in message_views


def test_a_large_blocks_message_is_split_with_the_progress_on_the_last_part() -> None:
    views = generated(3_000)
    wire_items = [[key, to_wire(view)] for key, view in items(*views)]
    progress = {"incidents.cantho:0": 123, "incidents.angiang:1": 456}
    assert len(encode_blocks(progress, wire_items)) > 200_000

    parts = split_blocks(progress, wire_items, max_bytes=200_000)

    assert len(parts) > 1 and all(len(part) <= 200_000 for part in parts)
    decoded = [decode_blocks(part) for part in parts]
    assert [p for p, _ in decoded] == [{}] * (len(parts) - 1) + [progress]
    keys = [key for _, part_items in decoded for key, _ in part_items]
    assert keys == [key for key, _ in wire_items]  # every item once, in order
    small = split_blocks(progress, wire_items[:3])
    assert small == [encode_blocks(progress, wire_items[:3])]


def test_a_blocks_message_writes_each_view_once_and_reads_as_the_old_layout() -> None:
    views = generated(400)
    wire_items = [[key, to_wire(view)] for key, view in items(*views)]
    assert len({w[1] for _, w in wire_items}) < len(wire_items)  # some views under 2+ keys
    progress = {"incidents.cantho:0": 123}

    payload = encode_blocks(progress, wire_items)
    old = orjson.dumps({"s": progress, "i": wire_items})  # as written before

    assert len(orjson.loads(payload)["v"]) == len({w[1] for _, w in wire_items})
    assert len(payload) < len(old)
    assert decode_blocks(payload) == decode_blocks(old)
    _, decoded = decode_blocks(payload)
    by_event = {view.event_id: view for _, view in decoded}
    assert all(view is by_event[view.event_id] for _, view in decoded)  # one object each
