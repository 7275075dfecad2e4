"""Unit-test fixtures shared across modules: the schema store and codec over schemas/."""

from __future__ import annotations

from pathlib import Path

import pytest

from xborder.codec import AvroCodec
from xborder.schemas import SchemaStore

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@pytest.fixture(scope="session")
def store() -> SchemaStore:
    """Every schema of the working tree and its released versions."""
    return SchemaStore(SCHEMAS_DIR)


@pytest.fixture(scope="session")
def codec(store: SchemaStore) -> AvroCodec:
    """The real Avro codec over ``store``."""
    return AvroCodec(store)
