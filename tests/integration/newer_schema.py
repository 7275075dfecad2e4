"""A newer version of IncidentReported than ``schemas/`` holds, as another producer
would write it: a Category symbol this deployment does not know (Category declares the
default OTHER) and a new optional field."""

from __future__ import annotations

import json
from typing import Any

from xborder.registry import registrable_json
from xborder.schemas import SchemaStore

NEW_SYMBOL = "WILDLIFE_TRAFFICKING"
NEW_FIELD = "reporting_unit"


def newer_incident_schema(store: SchemaStore, extra_symbol: str = NEW_SYMBOL) -> dict[str, Any]:
    """The current IncidentReported (self-contained) with ``extra_symbol`` in Category and
    the optional string field ``reporting_unit``."""
    document: dict[str, Any] = json.loads(registrable_json(store.current("IncidentReported")))
    for field in document["fields"]:
        if field["name"] == "category":
            field["type"]["symbols"].insert(0, extra_symbol)
    document["fields"].append(
        {"name": NEW_FIELD, "type": ["null", "string"], "default": None, "doc": "Newer field."}
    )
    return document
