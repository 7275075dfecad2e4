"""Backward compatibility of schema changes: can the new schema read data written with the old?

Kafka is the source of truth and is replayed from the start, so a consumer with the
working tree's schemas (the readers) must decode every message ever written with a
released version (the writers). The check follows the Avro specification's schema
resolution rules:

- a field the reader adds needs a default; a field the reader drops is skipped;
- primitives may be promoted: int to long, float or double; long to float or double;
  float to double; string to bytes and back;
- an enum symbol the writer has and the reader lacks is an error unless the reader's
  enum has a default; fixed sizes must be equal;
- named types (record, enum, fixed) match by unqualified name or by a reader alias;
- a writer union needs a reader branch for each of its branches; a reader union needs a
  branch that reads the writer's type; arrays, maps and records are checked recursively.

One rule is stricter than the specification: a changed logical type (for example
``timestamp-millis`` to ``timestamp-micros``, or a plain string becoming a ``uuid``) is
reported, because old values would be read with another meaning or fail to convert.

Each problem names the field path, e.g. ``IncidentReported.location.lat: type changed
from double to string``; ``[]`` stands for array items and ``{}`` for map values. Run
``python -m xborder.compat [schemas_dir]`` to check the tree against its history.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

from xborder.errors import ConfigurationError, InvalidRecordError, XborderError
from xborder.jsonavro import (
    NamedTypes,
    from_json,
    kind_of,
    logical_type,
    parse_with_names,
    resolve,
    short_name,
)
from xborder.schemas import SchemaStore

PROMOTIONS = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)
"""(writer type, reader type) pairs that Avro resolution promotes."""
NAMED = frozenset({"record", "enum", "fixed"})
VERSION_DIR = re.compile(r"v[1-9][0-9]*")


@dataclass
class _Context:
    old_named: NamedTypes
    new_named: NamedTypes
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    """Record pairs already checked: a type used twice (or recursively) is checked once."""

    def report(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")


def check_compatibility(old: Any, new: Any) -> list[str]:
    """Problems that stop a reader with schema ``new`` from reading data written with ``old``.

    Both may be raw schema dicts (self-contained) or fastavro-parsed schemas. Returns an
    empty list when every old message can be read. Raises ConfigurationError when either
    schema is not valid Avro.
    """
    old_parsed, old_named = parse_with_names(old)
    new_parsed, new_named = parse_with_names(new)
    ctx = _Context(old_named, new_named)
    new_top = resolve(new_parsed, new_named)
    root = short_name(new_top["name"]) if kind_of(new_top) in NAMED else kind_of(new_top)
    _check(old_parsed, new_parsed, root, ctx)
    return ctx.problems


def describe(node: Any, named: NamedTypes) -> str:
    """A short human-readable name of a schema node, e.g. ``union [null, string]``."""
    node = resolve(node, named)
    kind = kind_of(node)
    if kind == "union":
        return "union [" + ", ".join(describe(branch, named) for branch in node) + "]"
    if kind in NAMED:
        return f"{kind} {node['name']}"
    if kind == "array":
        return f"array<{describe(node['items'], named)}>"
    if kind == "map":
        return f"map<{describe(node['values'], named)}>"
    logical = logical_type(node)
    return f"{kind} ({logical})" if logical else kind


def _check(old: Any, new: Any, path: str, ctx: _Context) -> None:
    old = resolve(old, ctx.old_named)
    new = resolve(new, ctx.new_named)
    old_kind, new_kind = kind_of(old), kind_of(new)
    if old_kind == "union":
        _check_old_union(old, new, path, ctx)
        return
    if new_kind == "union":
        branch = _matching_branch(old, new, ctx)
        if branch is None:
            ctx.report(
                path,
                f"type changed from {describe(old, ctx.old_named)} to "
                f"{describe(new, ctx.new_named)}, and no branch of the new union reads "
                "the old values",
            )
        else:
            _check(old, branch, path, ctx)
        return
    if old_kind != new_kind and (old_kind, new_kind) not in PROMOTIONS:
        ctx.report(
            path,
            f"type changed from {describe(old, ctx.old_named)} to {describe(new, ctx.new_named)}",
        )
        return
    if not _check_logical(old, new, path, ctx):
        return
    if new_kind == "record":
        _check_record(old, new, path, ctx)
    elif new_kind == "enum":
        _check_enum(old, new, path, ctx)
    elif new_kind == "fixed":
        if _check_name(old, new, path, ctx) and old["size"] != new["size"]:
            ctx.report(path, f"fixed size changed from {old['size']} to {new['size']} bytes")
    elif new_kind == "array":
        _check(old["items"], new["items"], f"{path}[]", ctx)
    elif new_kind == "map":
        _check(old["values"], new["values"], f"{path}{{}}", ctx)


def _check_old_union(old: list[Any], new: Any, path: str, ctx: _Context) -> None:
    """Every branch the writer may have chosen must resolve against the reader's type."""
    for branch in old:
        target = _matching_branch(branch, new if kind_of(new) == "union" else [new], ctx)
        if target is None:
            ctx.report(
                path,
                f"values of the old union branch {describe(branch, ctx.old_named)} cannot be "
                f"read: the new type {describe(new, ctx.new_named)} has no matching branch",
            )
        else:
            _check(branch, target, path, ctx)


def _matching_branch(old: Any, new_union: list[Any], ctx: _Context) -> Any | None:
    """The reader branch Avro resolution picks for a writer type: same kind first, then promoted."""
    old = resolve(old, ctx.old_named)
    old_kind = kind_of(old)
    branches = [resolve(branch, ctx.new_named) for branch in new_union]
    for branch in branches:
        if kind_of(branch) == old_kind and (old_kind not in NAMED or _names_match(old, branch)):
            return branch
    for branch in branches:
        if (old_kind, kind_of(branch)) in PROMOTIONS:
            return branch
    return None


def _names_match(old: dict[str, Any], new: dict[str, Any]) -> bool:
    old_full, new_full = old["name"], new["name"]
    if short_name(old_full) == short_name(new_full):
        return True
    namespace = new_full.rpartition(".")[0]
    for alias in new.get("aliases", []):
        qualified = alias if "." in alias or not namespace else f"{namespace}.{alias}"
        if old_full in (alias, qualified) or short_name(old_full) == alias:
            return True
    return False


def _check_name(old: dict[str, Any], new: dict[str, Any], path: str, ctx: _Context) -> bool:
    if _names_match(old, new):
        return True
    kind = kind_of(new)
    ctx.report(
        path,
        f"{kind} name changed from {old['name']} to {new['name']}; old data names "
        f'{old["name"]}: add "aliases": ["{old["name"]}"] to the new {kind}',
    )
    return False


def _check_logical(old: Any, new: Any, path: str, ctx: _Context) -> bool:
    old_logical, new_logical = logical_type(old), logical_type(new)
    if old_logical != new_logical:
        ctx.report(
            path,
            f"logical type changed from {old_logical or 'none'} to {new_logical or 'none'}; "
            "old values would be read with another meaning",
        )
        return False
    if old_logical == "decimal":
        old_ps = (old.get("precision"), old.get("scale", 0))
        new_ps = (new.get("precision"), new.get("scale", 0))
        if old_ps != new_ps:
            ctx.report(path, f"decimal (precision, scale) changed from {old_ps} to {new_ps}")
            return False
    return True


def _check_record(old: dict[str, Any], new: dict[str, Any], path: str, ctx: _Context) -> None:
    if not _check_name(old, new, path, ctx):
        return
    pair = (old["name"], new["name"])
    if pair in ctx.seen:
        return
    ctx.seen.add(pair)
    old_fields = {f["name"]: f for f in old["fields"]}
    for new_field in new["fields"]:
        field_path = f"{path}.{new_field['name']}"
        source = old_fields.get(new_field["name"]) or next(
            (old_fields[a] for a in new_field.get("aliases", []) if a in old_fields), None
        )
        if source is not None:
            _check(source["type"], new_field["type"], field_path, ctx)
        elif "default" not in new_field:
            ctx.report(
                field_path,
                "field added without a default (or renamed without an alias): data written "
                'with the old schema has no value for it; give the field a "default"',
            )


def _check_enum(old: dict[str, Any], new: dict[str, Any], path: str, ctx: _Context) -> None:
    if not _check_name(old, new, path, ctx):
        return
    missing = [symbol for symbol in old["symbols"] if symbol not in new["symbols"]]
    if missing and new.get("default") is None:
        ctx.report(
            path,
            f"enum {new['name']} no longer has symbol(s) {', '.join(missing)} and has no "
            'default to read them as; keep the symbol(s) or give the enum a "default"',
        )


def verify_roundtrip(old: Any, new: Any, documents: Iterable[Any]) -> list[str]:
    """Encode each plain-JSON document with ``old`` and decode it with ``new`` as reader.

    Returns one problem per document that fastavro cannot write or resolve.
    """
    old_parsed, _ = parse_with_names(old)
    new_parsed, new_named = parse_with_names(new)
    top = resolve(new_parsed, new_named)
    name = short_name(top["name"]) if kind_of(top) in NAMED else kind_of(top)
    problems = []
    for number, document in enumerate(documents):
        try:
            datum = from_json(old_parsed, document)
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, old_parsed, datum)
        except (InvalidRecordError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"{name}: document {number} does not fit the old schema: {exc}")
            continue
        buffer.seek(0)
        try:
            fastavro.schemaless_reader(buffer, old_parsed, new_parsed)
        except Exception as exc:  # fastavro raises many kinds on resolution failures
            problems.append(
                f"{name}: document {number} written with the old schema cannot be read with "
                f"the new one: {type(exc).__name__}: {exc}"
            )
    return problems


def released_versions(schemas_dir: Path) -> list[Path]:
    """Released version directories ``history/v<N>``, oldest first (v2 before v10)."""
    history = schemas_dir / "history"
    if not history.is_dir():
        return []
    versions = [path for path in history.iterdir() if path.is_dir()]
    for path in versions:
        if not VERSION_DIR.fullmatch(path.name):
            raise ConfigurationError(
                f"{path}: a released version directory must be named v<N> (v1, v2, ...); "
                "see schemas/history/README.md"
            )
    return sorted(versions, key=lambda path: int(path.name[1:]))


def top_level_records(store: SchemaStore) -> list[str]:
    """Full names of the store's schemas no other schema uses: the message types.

    Shared types in their own files (Location, Category, ...) are left out: they are
    checked through every record that uses them.
    """
    used: set[str] = set()
    for name in store.names():
        _, named = parse_with_names(store.current(name).parsed)
        used.update(other for other in named if other != name)
    return [name for name in store.names() if name not in used]


def load_examples(directory: Path) -> dict[str, Any]:
    """Example documents ``<directory>/examples/<Record>.json`` by record short name."""
    examples = {}
    for path in sorted((directory / "examples").glob("*.json")):
        try:
            examples[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"{path}: cannot read example: {exc}") from exc
    return examples


def check_tree(schemas_dir: Path, transitive: bool = True, roundtrip: bool = True) -> list[str]:
    """Problems of the working-tree schemas of ``schemas_dir`` against its released versions.

    With ``transitive`` (the default) every released version is checked, because a replay
    from the start of a topic meets messages of all of them; otherwise only the latest.
    With ``roundtrip`` each released example (``history/v<N>/examples``) is also written
    with the released schema and read with the current one. Each problem starts with the
    version, e.g. ``[v1] IncidentReported.location.lat: type changed from double to string``.
    """
    versions = released_versions(schemas_dir)
    current = SchemaStore(schemas_dir)
    current_names = set(current.names())
    problems = []
    for version in versions if transitive else versions[-1:]:
        released = SchemaStore(version)
        examples = load_examples(version) if roundtrip else {}
        for name in top_level_records(released):
            short = short_name(name)
            if name not in current_names:
                problems.append(
                    f"[{version.name}] {short}: released in {version.name} but missing from "
                    f"{schemas_dir}; its messages could no longer be decoded (restore "
                    f"{short}.avsc, or keep the full name {name} when renaming a file)"
                )
                continue
            old, new = released.current(name).parsed, current.current(name).parsed
            found = check_compatibility(old, new)
            if not found and short in examples:
                found = verify_roundtrip(old, new, [examples[short]])
            problems.extend(f"[{version.name}] {problem}" for problem in found)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Print the compatibility problems of a schemas directory; exit status 1 if any."""
    parser = argparse.ArgumentParser(
        prog="python -m xborder.compat",
        description="Check that the working-tree schemas can read every released version.",
    )
    parser.add_argument("schemas_dir", nargs="?", type=Path, default=Path("schemas"))
    parser.add_argument("--latest-only", action="store_true", help="check the latest release only")
    args = parser.parse_args(argv)
    try:
        problems = check_tree(args.schemas_dir, transitive=not args.latest_only)
    except XborderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.schemas_dir}: compatible with every released version")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
