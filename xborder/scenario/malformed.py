"""Malformed lines: what careless upstream systems send and the publish CLI must reject.

Each kind breaks a valid event in one way that one of the contract's checks catches:
the schema (``AvroCodec.from_json``), the rules beyond it (``EventRules``: region,
timestamps, raw identifiers via ``assert_subjects``), the producer's own-agency check,
or JSON parsing itself.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import timedelta
from typing import Any, Final, Literal, get_args

from xborder.agencies import Region
from xborder.jsonavro import format_timestamp, parse_timestamp

MalformedKind = Literal[
    "bad_enum",
    "missing_field",
    "raw_plate_token",
    "raw_phone_token",
    "raw_descriptor",
    "out_of_region",
    "bad_timestamp",
    "bad_uuid",
    "wrong_type",
    "occurred_after_reported",
    "foreign_agency",
    "not_json",
]
MALFORMED_KINDS: Final[tuple[MalformedKind, ...]] = get_args(MalformedKind)
"""Every kind, in the order the generator cycles through them."""

_MISSING: Final = ("occurred_at", "location", "incident_id", "category", "source_system")


def dumps(document: Any) -> str:
    """One event as a JSON line (compact, stable key order), without the newline."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def break_event(
    rng: random.Random,
    kind: MalformedKind,
    document: dict[str, Any],
    region: Region,
    agencies: tuple[str, ...],
    day_ms: int = 86_400_000,
) -> str:
    """The text of ``document`` broken in the way ``kind`` names (``document`` is untouched)."""
    doc = copy.deepcopy(document)
    if kind == "bad_enum":
        doc["category"] = rng.choice(("BURGLARY", "theft", "VANDALISM", "CYBER"))
    elif kind == "missing_field":
        del doc[rng.choice(_MISSING)]
    elif kind == "raw_plate_token":
        doc["subjects"][0]["token"] = (
            f"{rng.choice(('65', '67'))}{rng.choice('ABCDEFGH')}{rng.randint(1, 9)}-"
            f"{rng.randrange(1000):03d}.{rng.randrange(100):02d}"
        )
    elif kind == "raw_phone_token":
        number = rng.randrange(10**7)
        doc["subjects"][0]["token"] = (
            f"09{rng.randrange(10)} {number // 10**4:03d} {number % 10**4:04d}"
        )
    elif kind == "raw_descriptor":
        doc["subjects"][0]["descriptors"] = {
            "note": f"owner phone 09{rng.randrange(10)}{rng.randrange(10**7):07d}"
        }
    elif kind == "out_of_region":
        doc["location"]["lat"] = round(min(90.0, region.max_lat + 0.5 + rng.random()), 6)
    elif kind == "bad_timestamp":
        doc["occurred_at"] = doc["occurred_at"].replace("T", " ")[:19]  # no time zone
    elif kind == "bad_uuid":
        doc["event_id"] = f"EVT-{rng.randrange(16**12):012x}"
    elif kind == "wrong_type":
        doc["location"]["lon"] = str(doc["location"]["lon"])
    elif kind == "occurred_after_reported":
        later = parse_timestamp(doc["reported_at"], "reported_at") + timedelta(milliseconds=day_ms)
        doc["occurred_at"] = format_timestamp(later)
    elif kind == "foreign_agency":
        others = [a for a in agencies if a != doc["agency"]]
        if others:
            doc["agency"] = rng.choice(others)
        else:
            doc["category"] = "BURGLARY"
    elif kind == "not_json":
        text = dumps(doc)
        return text[: len(text) // 2]
    return dumps(doc)
