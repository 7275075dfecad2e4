"""The schema store: every ``.avsc`` of ``schemas/`` (and its released history), parsed once.

Each file holds one record; a record may refer by name to a type defined in another
file of the same directory, and the store inlines such references so that every
schema is self-contained (which the fingerprint of single-object encoding needs).
Schemas are looked up by full name (the current version, the reader schema) or by
their CRC-64-AVRO fingerprint (any version, the writer schema).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from xborder.errors import ConfigurationError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "enum", "fixed", "error"})


@dataclass(frozen=True)
class StoredSchema:
    """One version of one record schema."""

    full_name: str
    fingerprint: bytes
    """8-byte CRC-64-AVRO fingerprint, little-endian as on the wire."""
    parsed: Any
    """fastavro-parsed schema, ready for schemaless read/write."""
    plain: Any
    """The same schema parsed without its logical types: fastavro then reads timestamps
    as ints and uuids as strings, without building datetime and UUID objects (a third
    of the decoding time of an incident event)."""
    canonical: str
    """Parsing Canonical Form."""
    source: Path
    current: bool
    """True for the working-tree version, False for a released historical one."""


def _full_name(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _collect_definitions(node: Any, namespace: str | None, found: dict[str, Any]) -> None:
    """Record every named type defined inside ``node`` by its full name."""
    if isinstance(node, list):
        for branch in node:
            _collect_definitions(branch, namespace, found)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in NAMED_KINDS:
            full = _full_name(node["name"], node.get("namespace", namespace))
            found.setdefault(full, node)
            namespace = full.rpartition(".")[0] or None
        if kind in ("record", "error"):
            for field in node.get("fields", []):
                _collect_definitions(field["type"], namespace, found)
        elif kind == "array":
            _collect_definitions(node["items"], namespace, found)
        elif kind == "map":
            _collect_definitions(node["values"], namespace, found)
        elif isinstance(kind, (dict, list)):
            _collect_definitions(kind, namespace, found)


def _inline(node: Any, namespace: str | None, library: dict[str, Any], seen: set[str]) -> Any:
    """Return ``node`` with references to types of other files replaced by their definition."""
    if isinstance(node, str):
        if node in PRIMITIVES:
            return node
        full = _full_name(node, namespace)
        if full in seen:
            return full
        if full not in library:
            raise ConfigurationError(f"schema type {node!r} is not defined in any .avsc file")
        definition = copy.deepcopy(library[full])
        if "." not in definition["name"] and "namespace" not in definition:
            definition["namespace"] = full.rpartition(".")[0]
        return _inline(definition, namespace, library, seen)
    if isinstance(node, list):
        return [_inline(branch, namespace, library, seen) for branch in node]
    if isinstance(node, dict):
        out = dict(node)
        kind = node.get("type")
        if kind in NAMED_KINDS:
            full = _full_name(node["name"], node.get("namespace", namespace))
            seen.add(full)
            namespace = full.rpartition(".")[0] or None
        if kind in ("record", "error"):
            out["fields"] = [
                {**field, "type": _inline(field["type"], namespace, library, seen)}
                for field in node.get("fields", [])
            ]
        elif kind == "array":
            out["items"] = _inline(node["items"], namespace, library, seen)
        elif kind == "map":
            out["values"] = _inline(node["values"], namespace, library, seen)
        elif isinstance(kind, (dict, list, str)) and kind not in NAMED_KINDS | {"array", "map"}:
            out["type"] = _inline(kind, namespace, library, seen)
        return out
    return node


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read schema: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") not in NAMED_KINDS:
        raise ConfigurationError(f"{path}: a schema file must hold one named record")
    return data


def without_logical_types(node: Any) -> Any:
    """A copy of a schema document with every ``logicalType`` annotation removed."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(item) for item in node]
    return node


def _load_dir(directory: Path, current: bool) -> list[StoredSchema]:
    raw = {path: _read_json(path) for path in sorted(directory.glob("*.avsc"))}
    library: dict[str, Any] = {}
    for doc in raw.values():
        _collect_definitions(doc, None, library)
    stored = []
    for path, doc in raw.items():
        full = _full_name(doc["name"], doc.get("namespace"))
        try:
            expanded = _inline(doc, None, library, set())
            parsed = fastavro.parse_schema(expanded)
            plain = fastavro.parse_schema(without_logical_types(expanded))
        except fastavro.schema.SchemaParseException as exc:
            raise ConfigurationError(f"{path}: invalid Avro schema: {exc}") from exc
        canonical = to_parsing_canonical_form(parsed)
        stored.append(
            StoredSchema(
                full_name=full,
                fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
                parsed=parsed,
                plain=plain,
                canonical=canonical,
                source=path,
                current=current,
            )
        )
    return stored


def inline_references(document: Any, referenced: list[Any]) -> Any:
    """``document`` with the named types it refers to by name replaced by their
    definitions, taken from the ``referenced`` schema documents (each defined once, later
    uses by name), so that it is self-contained. Raises ConfigurationError naming a type
    defined nowhere."""
    library: dict[str, Any] = {}
    for other in referenced:
        _collect_definitions(other, None, library)
    _collect_definitions(document, None, library)
    return _inline(document, None, library, set())


def writer_schema(document: Any, source: Path) -> StoredSchema:
    """A self-contained schema document of another producer (a newer or older version of
    one of our records) as a writer schema, not part of any store.

    Raises ValueError naming the problem when the document is not a valid,
    self-contained named Avro schema.
    """
    if not isinstance(document, dict) or document.get("type") not in NAMED_KINDS:
        raise ValueError("not a named Avro record schema")
    try:
        parsed = fastavro.parse_schema(document)
        plain = fastavro.parse_schema(without_logical_types(document))
        canonical = to_parsing_canonical_form(parsed)
    except (TypeError, KeyError, AttributeError, fastavro.schema.SchemaParseException) as exc:
        raise ValueError(f"invalid Avro schema: {type(exc).__name__}: {exc}") from exc
    return StoredSchema(
        full_name=_full_name(str(document["name"]), document.get("namespace")),
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        parsed=parsed,
        plain=plain,
        canonical=canonical,
        source=source,
        current=False,
    )


class SchemaStore:
    """All schemas of a directory and its ``history/`` subdirectories, parsed once."""

    def __init__(self, schemas_dir: Path) -> None:
        if not schemas_dir.is_dir():
            raise ConfigurationError(
                f"schemas directory {schemas_dir} does not exist; set XBORDER_SCHEMAS_DIR"
            )
        self.directory = schemas_dir
        self._current: dict[str, StoredSchema] = {}
        self._by_fingerprint: dict[bytes, StoredSchema] = {}
        for schema in _load_dir(schemas_dir, current=True):
            self._current[schema.full_name] = schema
            self._by_fingerprint[schema.fingerprint] = schema
        history = schemas_dir / "history"
        if history.is_dir():
            for version_dir in sorted(p for p in history.iterdir() if p.is_dir()):
                for schema in _load_dir(version_dir, current=False):
                    self._by_fingerprint.setdefault(schema.fingerprint, schema)

    def current(self, name: str) -> StoredSchema:
        """The working-tree schema of record ``name`` (full or short name)."""
        found = self._current.get(name) or next(
            (s for s in self._current.values() if s.full_name.rpartition(".")[2] == name), None
        )
        if found is None:
            known = ", ".join(sorted(self._current))
            raise ConfigurationError(f"no schema named {name!r} in {self.directory} ({known})")
        return found

    def by_fingerprint(self, fp: bytes) -> StoredSchema | None:
        """Any known version (current or released) with this fingerprint, or None."""
        return self._by_fingerprint.get(fp)

    def names(self) -> list[str]:
        """Full names of the current record schemas."""
        return sorted(self._current)
