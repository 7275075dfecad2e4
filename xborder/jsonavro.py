"""Plain JSON documents to Avro datums and back, guided by the schema.

The publish CLI and the schema examples take events as plain JSON: unions untagged,
timestamps as ISO-8601 strings with a time zone (``"2026-03-19T08:00:00.000Z"``), dates
as ``"2026-03-19"``, bytes and fixed as base64, decimals as strings or numbers. This is
not Avro's own JSON encoding (which tags union branches and writes bytes as code
points); it is the shape an agency's system most easily produces. ``from_json`` walks
the schema, converts each value to what fastavro's writer takes and fills in field
defaults, naming the field path in every error; ``to_json`` turns a decoded datum back
into that plain JSON shape.
"""

from __future__ import annotations

import base64
import binascii
import copy
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from fastavro.schema import SchemaParseException, parse_schema

from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.pseudonym.detect import quoted

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
TIMESTAMP_LOGICAL_TYPES = frozenset({"timestamp-millis", "timestamp-micros"})
LOCAL_TIMESTAMP_LOGICAL_TYPES = frozenset({"local-timestamp-millis", "local-timestamp-micros"})
TIME_LOGICAL_TYPES = frozenset({"time-millis", "time-micros"})
NamedTypes = dict[str, Any]


def parse_with_names(schema: Any) -> tuple[Any, NamedTypes]:
    """Parse ``schema`` (raw or already parsed) and return it with its named types by full name.

    Raises ConfigurationError when the schema is not valid Avro.
    """
    if isinstance(schema, dict) and "__named_schemas" in schema:
        return schema, dict(schema["__named_schemas"])
    named: NamedTypes = {}
    try:
        parsed = parse_schema(copy.deepcopy(schema), named_schemas=named)
    except (SchemaParseException, TypeError, KeyError, ValueError) as exc:
        raise ConfigurationError(f"invalid Avro schema: {exc}") from exc
    return parsed, named


def resolve(node: Any, named: NamedTypes) -> Any:
    """Follow named references and ``{"type": ...}`` wrappers down to a concrete schema node."""
    while True:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return node
            if node not in named:
                raise ConfigurationError(f"schema type {node!r} is not defined")
            node = named[node]
        elif isinstance(node, dict) and (
            isinstance(node.get("type"), (dict, list))
            or (
                isinstance(node.get("type"), str)
                and node["type"] not in PRIMITIVES
                and node["type"] not in ("record", "error", "enum", "fixed", "array", "map")
            )
        ):
            node = node["type"]
        else:
            return node


def kind_of(node: Any) -> str:
    """The Avro kind of a resolved node: a primitive name, record, enum, ..., or union."""
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    kind = str(node["type"])
    return "record" if kind == "error" else kind


def logical_type(node: Any) -> str | None:
    """The logicalType annotation of a resolved node, if any."""
    return node.get("logicalType") if isinstance(node, dict) else None


def short_name(full_name: str) -> str:
    """The unqualified part of a full Avro name."""
    return full_name.rpartition(".")[2]


def from_json(schema: Any, doc: Any) -> Any:
    """Convert a plain JSON document into the datum fastavro writes with ``schema``.

    Missing fields take their schema default. Raises InvalidRecordError naming the field
    path (for example ``IncidentReported.location.lat``) when ``doc`` does not fit.
    """
    parsed, named = parse_with_names(schema)
    top = resolve(parsed, named)
    root = short_name(top["name"]) if kind_of(top) in ("record", "enum", "fixed") else "value"
    return _from_json(top, doc, named, root)


def _fail(path: str, message: str) -> InvalidRecordError:
    return InvalidRecordError(f"{path}: {message}", reason="invalid")


def _type_label(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _from_json(node: Any, value: Any, named: NamedTypes, path: str) -> Any:
    node = resolve(node, named)
    kind = kind_of(node)
    if kind == "union":
        return _from_json_union(node, value, named, path)
    if kind == "record":
        return _from_json_record(node, value, named, path)
    if kind == "array":
        if not isinstance(value, list):
            raise _fail(path, f"expected a JSON array, got {_type_label(value)}")
        return [_from_json(node["items"], v, named, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise _fail(path, f"expected a JSON object, got {_type_label(value)}")
        return {
            str(k): _from_json(node["values"], v, named, f"{path}[{k!r}]") for k, v in value.items()
        }
    if kind == "enum":
        if not isinstance(value, str) or value not in node["symbols"]:
            raise _fail(path, f"{quoted(value)} is not one of {', '.join(node['symbols'])}")
        return value
    if kind == "fixed":
        raw = _from_base64(value, path)
        if len(raw) != node["size"]:
            raise _fail(path, f"expected {node['size']} bytes, got {len(raw)}")
        return raw
    return _from_json_primitive(kind, logical_type(node), node, value, path)


def _from_json_union(branches: list[Any], value: Any, named: NamedTypes, path: str) -> Any:
    if value is None:
        if "null" in branches:
            return None
        raise _fail(path, "null is not allowed here")
    errors = []
    for branch in branches:
        if branch == "null":
            continue
        try:
            return _from_json(branch, value, named, path)
        except InvalidRecordError as exc:
            errors.append(str(exc))
    raise _fail(path, f"{quoted(value)} fits no branch of the union: " + "; ".join(errors))


def _from_json_record(node: dict[str, Any], value: Any, named: NamedTypes, path: str) -> Any:
    if not isinstance(value, dict):
        raise _fail(path, f"expected a JSON object, got {_type_label(value)}")
    fields = node["fields"]
    unknown = sorted(set(value) - {f["name"] for f in fields})
    if unknown:
        raise _fail(path, f"unknown field(s) {', '.join(unknown)} (not in {node['name']})")
    out = {}
    for field in fields:
        name = field["name"]
        if name in value:
            out[name] = _from_json(field["type"], value[name], named, f"{path}.{name}")
        elif "default" in field:
            out[name] = _from_default(field["type"], field["default"], named)
        else:
            raise _fail(f"{path}.{name}", "required field is missing")
    return out


def _from_default(node: Any, default: Any, named: NamedTypes) -> Any:
    """A field default (Avro JSON: bytes as code points, union default in its first branch)."""
    node = resolve(node, named)
    kind = kind_of(node)
    if kind == "union":
        return _from_default(node[0], default, named)
    if kind in ("bytes", "fixed") and isinstance(default, str):
        return default.encode("latin-1")
    if kind == "record" and isinstance(default, dict):
        return {
            f["name"]: _from_default(f["type"], default.get(f["name"], f.get("default")), named)
            for f in node["fields"]
        }
    if kind == "array" and isinstance(default, list):
        return [_from_default(node["items"], item, named) for item in default]
    if kind == "map" and isinstance(default, dict):
        return {k: _from_default(node["values"], v, named) for k, v in default.items()}
    return copy.deepcopy(default)


def _from_json_primitive(kind: str, logical: str | None, node: Any, value: Any, path: str) -> Any:
    if kind == "null":
        if value is not None:
            raise _fail(path, f"expected null, got {_type_label(value)}")
        return None
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {_type_label(value)}")
        return value
    if kind in ("int", "long"):
        return _from_json_integer(logical, value, path)
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, f"expected a number, got {_type_label(value)}")
        return float(value)
    if kind == "bytes":
        if logical == "decimal":
            return _parse_decimal(value, node, path)
        return _from_base64(value, path)
    if kind == "string":
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {_type_label(value)}")
        if logical == "uuid":
            try:
                uuid.UUID(value)
            except ValueError as exc:
                raise _fail(path, f"{quoted(value)} is not a UUID") from exc
        return value
    raise _fail(path, f"unsupported Avro type {kind!r}")


def _from_json_integer(logical: str | None, value: Any, path: str) -> Any:
    if isinstance(value, str) and logical in TIMESTAMP_LOGICAL_TYPES:
        return parse_timestamp(value, path)
    if isinstance(value, str) and logical in LOCAL_TIMESTAMP_LOGICAL_TYPES:
        return _parse_iso(value, path, datetime.fromisoformat, "a local ISO-8601 date-time")
    if isinstance(value, str) and logical == "date":
        return _parse_iso(value, path, date.fromisoformat, "an ISO-8601 date")
    if isinstance(value, str) and logical in TIME_LOGICAL_TYPES:
        return _parse_iso(value, path, time.fromisoformat, "an ISO-8601 time")
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an ISO-8601 timestamp or an integer" if logical else "an integer"
        raise _fail(path, f"expected {expected}, got {_type_label(value)}")
    return value


def parse_timestamp(value: str, path: str) -> datetime:
    """Parse an ISO-8601 date-time with a time zone into an aware UTC datetime."""
    moment = _parse_iso(
        value,
        path,
        lambda text: datetime.fromisoformat(text.replace("Z", "+00:00")),
        "an ISO-8601 timestamp",
    )
    if moment.tzinfo is None:
        raise _fail(
            path, f"{quoted(value)} has no time zone; give UTC, e.g. '2026-03-19T08:00:00.000Z'"
        )
    return moment.astimezone(UTC)


def _parse_iso(value: str, path: str, parse: Callable[[str], Any], what: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise _fail(path, f"{quoted(value)} is not {what}") from exc


def _parse_decimal(value: Any, node: dict[str, Any], path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fail(path, f"expected a decimal as a string or number, got {_type_label(value)}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise _fail(path, f"{quoted(value)} is not a decimal number") from exc
    return number.quantize(Decimal(1).scaleb(-int(node.get("scale", 0))))


def _from_base64(value: Any, path: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise _fail(path, f"expected base64 text, got {_type_label(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(path, "is not valid base64") from exc


def format_timestamp(moment: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with milliseconds, e.g. ``2026-03-19T08:00:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(value: Any) -> Any:
    """Turn a decoded datum into the plain JSON shape ``from_json`` takes."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return format_timestamp(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    return value
