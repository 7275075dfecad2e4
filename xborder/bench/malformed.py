"""Malformed messages of every kind the worker meets on an agency topic, for benchmarks.

:func:`with_malformed` mixes them into a list of good incident messages at a given share:
what a careless or hostile producer sends past (or without) the project's library. Each
kind names the dead-letter reason the worker must give it (:data:`EXPECTED_REASON`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from xborder.bench.kafka_io import Message
from xborder.codec import SINGLE_OBJECT_MAGIC
from xborder.jsonavro import format_timestamp
from xborder.verification import Officer, verdict_record
from xborder.wire import WireCodec

EXPECTED_REASON: Final[Mapping[str, str]] = {
    "garbage": "undecodable",
    "empty": "undecodable",
    "truncated": "undecodable",
    "unknown_schema": "unknown-schema",
    "unexpected_record": "invalid",
    "raw_token": "raw-identifier",
    "foreign_agency": "invalid",
    "out_of_region": "invalid",
    "future": "invalid",
    "too_many_subjects": "invalid",
}
"""Each kind of malformed message and the dead-letter reason it must get."""
KINDS: Final = tuple(EXPECTED_REASON)


def _broken_document(rng: random.Random, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    if kind == "raw_token":
        broken["subjects"] = [
            {"role": "SUSPECT", "kind": "VEHICLE", "token": "65B1-234.56", "key_id": "k1"}
        ]
    elif kind == "foreign_agency":
        broken["agency"] = "angiang" if doc["agency"] != "angiang" else "cantho"
    elif kind == "out_of_region":
        broken["location"] = {**doc["location"], "lat": 48.85, "lon": 2.35}
    elif kind == "future":
        later = datetime.now(UTC) + timedelta(days=30)
        broken["occurred_at"] = broken["reported_at"] = format_timestamp(later)
    elif kind == "too_many_subjects":
        broken["subjects"] = [
            {"role": "WITNESS", "kind": "PHONE", "token": f"{n:064x}", "key_id": "k1"}
            for n in range(1, 61)
        ]
    return broken


def malformed_message(
    rng: random.Random, kind: str, good: Message, document: dict[str, Any], codec: WireCodec
) -> Message:
    """A message of ``kind`` on ``good``'s topic, made from ``good`` and its JSON document."""
    if kind == "garbage":
        value = rng.randbytes(rng.randint(20, 400))
    elif kind == "empty":
        value = b""
    elif kind == "truncated":
        value = good.value[: max(11, len(good.value) // 2)]
    elif kind == "unknown_schema":
        value = SINGLE_OBJECT_MAGIC + rng.randbytes(8) + good.value[10:]
    elif kind == "unexpected_record":
        officer = Officer("ab" * 32, "example-key-1")
        value = codec.encode(
            "Verdict", verdict_record(document["agency"], "0" * 64, "CONFIRM", "", officer)
        )
    else:
        broken = _broken_document(rng, kind, document)
        value = codec.encode("IncidentReported", codec.from_json("IncidentReported", broken))
    return Message(good.topic, good.key, value)


def with_malformed(
    messages: list[Message],
    documents: list[dict[str, Any]],
    codec: WireCodec,
    share: float,
    seed: int = 5,
) -> tuple[list[Message], dict[str, int]]:
    """``messages`` with malformed ones mixed in so that they make ``share`` of the result,
    every kind in turn, at random positions; and how many of each kind."""
    rng = random.Random(seed)
    count = round(len(messages) * share / (1 - share)) if share > 0 else 0
    out = list(messages)
    made = dict.fromkeys(KINDS, 0)
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        pick = rng.randrange(len(messages))
        out.insert(rng.randrange(len(out) + 1), malformed_message(
            rng, kind, messages[pick], documents[pick], codec
        ))  # fmt: skip
        made[kind] += 1
    return out, made
