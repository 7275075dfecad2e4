"""The backward-compatibility checker, and the CI gate: the tree can read every release.

Breaking changes are made by mutating a copy of a real schema (``IncidentReported``,
self-contained) or a small one, and each test asserts the problem names the field path.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xborder.compat import (
    check_compatibility,
    check_tree,
    main,
    released_versions,
    top_level_records,
    verify_roundtrip,
)
from xborder.errors import ConfigurationError
from xborder.schemas import SchemaStore

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
Schema = dict[str, Any]


def _raw(node: Any) -> Any:
    """A parsed schema without fastavro's bookkeeping keys: plain, self-contained Avro JSON."""
    if isinstance(node, dict):
        return {k: _raw(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_raw(v) for v in node]
    return node


@pytest.fixture(scope="module")
def incident() -> Schema:
    raw: Schema = _raw(SchemaStore(SCHEMAS_DIR).current("IncidentReported").parsed)
    return raw


@pytest.fixture(scope="module")
def example() -> Any:
    return json.loads((SCHEMAS_DIR / "examples" / "IncidentReported.json").read_text("utf-8"))


def _field(record: Schema, name: str) -> Schema:
    return next(f for f in record["fields"] if f["name"] == name)


def _nested(record: Schema, *path: str) -> Schema:
    """The record or enum definition reached through field names (arrays stepped into)."""
    node: Any = record
    for name in path:
        node = _field(node, name)["type"]
        while isinstance(node, dict) and node.get("type") == "array":
            node = node["items"]
    result: Schema = node
    return result


def _changed(schema: Schema, mutate: Callable[[Schema], None]) -> Schema:
    new = copy.deepcopy(schema)
    mutate(new)
    return new


def _small(*fields: Schema, name: str = "Sample") -> Schema:
    return {"type": "record", "name": name, "namespace": "test.v1", "fields": list(fields)}


def test_identical_schemas_are_compatible(incident: Schema) -> None:
    assert check_compatibility(incident, copy.deepcopy(incident)) == []


# -- breaking changes, one per kind --------------------------------------------------------


def test_changed_field_type_is_reported_with_its_path(incident: Schema) -> None:
    new = _changed(incident, lambda s: _field(_nested(s, "location"), "lat").update(type="string"))
    assert check_compatibility(incident, new) == [
        "IncidentReported.location.lat: type changed from double to string"
    ]


def test_added_field_without_default_is_reported(incident: Schema) -> None:
    new = _changed(incident, lambda s: s["fields"].append({"name": "priority", "type": "int"}))
    [problem] = check_compatibility(incident, new)
    assert problem.startswith("IncidentReported.priority: field added without a default")


def test_narrowing_a_primitive_is_reported() -> None:
    old = _small({"name": "count", "type": "long"})
    new = _small({"name": "count", "type": "int"})
    assert check_compatibility(old, new) == ["Sample.count: type changed from long to int"]


def test_removed_enum_symbol_without_default_is_reported(incident: Schema) -> None:
    def drop_phone(s: Schema) -> None:
        _field(_nested(s, "subjects"), "kind")["type"]["symbols"].remove("PHONE")

    new = _changed(incident, drop_phone)
    [problem] = check_compatibility(incident, new)
    assert problem.startswith(
        "IncidentReported.subjects[].kind: enum xborder.v1.SubjectKind no longer has symbol(s) "
        "PHONE and has no default"
    )


def test_renamed_record_without_alias_is_reported(incident: Schema) -> None:
    new = _changed(incident, lambda s: _nested(s, "location").update(name="xborder.v1.Place"))
    [problem] = check_compatibility(incident, new)
    assert problem.startswith(
        "IncidentReported.location: record name changed from xborder.v1.Location to "
        "xborder.v1.Place"
    )
    assert '"aliases": ["xborder.v1.Location"]' in problem


def test_renamed_enum_without_alias_is_reported(incident: Schema) -> None:
    def rename(s: Schema) -> None:
        _field(s, "severity")["type"]["name"] = "xborder.v1.Gravity"

    [problem] = check_compatibility(incident, _changed(incident, rename))
    assert problem.startswith("IncidentReported.severity: enum name changed")


def test_renamed_field_without_alias_is_reported(incident: Schema) -> None:
    new = _changed(incident, lambda s: _field(s, "source_system").update(name="origin_system"))
    [problem] = check_compatibility(incident, new)
    assert problem.startswith("IncidentReported.origin_system: field added without a default")


def test_nullable_field_made_required_is_reported(incident: Schema) -> None:
    def required(s: Schema) -> None:
        field = _field(s, "narrative")
        field["type"] = "string"
        del field["default"]

    [problem] = check_compatibility(incident, _changed(incident, required))
    assert problem.startswith(
        "IncidentReported.narrative: values of the old union branch null cannot be read"
    )


def test_changed_union_branch_is_reported(incident: Schema) -> None:
    new = _changed(incident, lambda s: _field(s, "narrative").update(type=["null", "int"]))
    [problem] = check_compatibility(incident, new)
    assert problem.startswith(
        "IncidentReported.narrative: values of the old union branch string cannot be read: "
        "the new type union [null, int] has no matching branch"
    )


def test_required_field_moved_into_a_union_without_its_type_is_reported() -> None:
    old = _small({"name": "code", "type": "string"})
    new = _small({"name": "code", "type": ["null", "int"], "default": None})
    [problem] = check_compatibility(old, new)
    assert problem.startswith("Sample.code: type changed from string to union [null, int]")


def test_changed_array_items_are_reported(incident: Schema) -> None:
    def ints(s: Schema) -> None:
        _field(s, "modus_operandi")["type"]["items"] = "int"

    assert check_compatibility(incident, _changed(incident, ints)) == [
        "IncidentReported.modus_operandi[]: type changed from string to int"
    ]


def test_changed_map_values_in_a_nested_record_are_reported(incident: Schema) -> None:
    def ints(s: Schema) -> None:
        _field(_nested(s, "subjects"), "descriptors")["type"]["values"] = "int"

    assert check_compatibility(incident, _changed(incident, ints)) == [
        "IncidentReported.subjects[].descriptors{}: type changed from string to int"
    ]


def test_changed_logical_type_is_reported(incident: Schema) -> None:
    def micros(s: Schema) -> None:
        _field(s, "occurred_at")["type"]["logicalType"] = "timestamp-micros"

    [problem] = check_compatibility(incident, _changed(incident, micros))
    assert problem.startswith(
        "IncidentReported.occurred_at: logical type changed from timestamp-millis to "
        "timestamp-micros"
    )


def test_changed_fixed_size_is_reported() -> None:
    def digest(size: int) -> Schema:
        return _small({"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": size}})

    assert check_compatibility(digest(16), digest(32)) == [
        "Sample.hash: fixed size changed from 16 to 32 bytes"
    ]


def test_several_problems_are_all_reported(incident: Schema) -> None:
    def break_twice(s: Schema) -> None:
        _field(_nested(s, "location"), "lon").update(type="string")
        s["fields"].append({"name": "priority", "type": "int"})

    problems = check_compatibility(incident, _changed(incident, break_twice))
    assert [p.partition(":")[0] for p in problems] == [
        "IncidentReported.location.lon",
        "IncidentReported.priority",
    ]


def test_an_invalid_schema_is_a_configuration_error(incident: Schema) -> None:
    broken = _changed(incident, lambda s: _field(s, "severity")["type"].update(default="HUGE"))
    with pytest.raises(ConfigurationError, match="invalid Avro schema"):
        check_compatibility(incident, broken)


# -- compatible changes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["fields"].append(
            {"name": "priority", "type": "int", "default": 0, "doc": "added with a default"}
        ),
        lambda s: s["fields"].append({"name": "tags", "type": ["null", "string"], "default": None}),
        lambda s: s["fields"].remove(_field(s, "narrative")),
        lambda s: _field(s, "category")["type"]["symbols"].remove("GAMBLING"),  # has a default
        lambda s: _field(s, "severity")["type"]["symbols"].append("EXTREME"),
        lambda s: _field(s, "source_system").update(type=["null", "string"]),
        lambda s: _field(s, "narrative").update(type=["null", "string", "bytes"]),
        lambda s: _field(s, "source_system").update(name="origin", aliases=["source_system"]),
        lambda s: _nested(s, "location").update(
            name="xborder.v1.Place", aliases=["xborder.v1.Location"]
        ),
        lambda s: _field(s, "narrative").update(doc="reworded documentation"),
    ],
    ids=[
        "field-added-with-default",
        "nullable-field-added",
        "field-removed",
        "enum-symbol-removed-with-default",
        "enum-symbol-added",
        "field-made-nullable",
        "union-branch-added",
        "field-renamed-with-alias",
        "record-renamed-with-alias",
        "doc-changed",
    ],
)
def test_compatible_change_is_accepted(
    incident: Schema, example: Any, mutate: Callable[[Schema], None]
) -> None:
    new = _changed(incident, mutate)
    assert check_compatibility(incident, new) == []
    assert verify_roundtrip(incident, new, [example]) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_avro_promotions_are_accepted(old: str, new: str) -> None:
    before = _small({"name": "value", "type": old}, {"name": "maybe", "type": ["null", old]})
    after = _small({"name": "value", "type": new}, {"name": "maybe", "type": ["null", new]})
    assert check_compatibility(before, after) == []


def test_a_recursive_record_is_checked_once_per_type() -> None:
    node = _small(
        {"name": "label", "type": "string"},
        {"name": "children", "type": {"type": "array", "items": "test.v1.Node"}},
        name="Node",
    )
    assert check_compatibility(node, copy.deepcopy(node)) == []


# -- the encoded check agrees with the structural one -------------------------------------------


def test_roundtrip_fails_where_the_checker_reports_a_removed_symbol(
    incident: Schema, example: Any
) -> None:
    def drop_phone(s: Schema) -> None:
        _field(_nested(s, "subjects"), "kind")["type"]["symbols"].remove("PHONE")

    [problem] = verify_roundtrip(incident, _changed(incident, drop_phone), [example])
    assert problem.startswith("IncidentReported: document 0 written with the old schema cannot")


# -- the tree and its history (the CI gate) -----------------------------------------------------


def test_working_tree_schemas_read_every_released_version() -> None:
    assert [v.name for v in released_versions(SCHEMAS_DIR)][:1] == ["v1"]
    problems = check_tree(SCHEMAS_DIR)
    assert problems == [], "backward-incompatible schema change:\n" + "\n".join(problems)


def test_message_types_are_the_records_no_other_schema_uses() -> None:
    names = top_level_records(SchemaStore(SCHEMAS_DIR))
    assert "xborder.v1.IncidentReported" in names
    assert "xborder.v1.Location" not in names
    assert "xborder.v1.IncidentRef" not in names


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of schemas/ (with its history) to break."""
    copied = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, copied)
    return copied


def _edit(path: Path, mutate: Callable[[Schema], None]) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    mutate(schema)
    path.write_text(json.dumps(schema), encoding="utf-8")


def test_gate_names_version_record_and_field_of_a_breaking_change(tree: Path) -> None:
    _edit(tree / "Location.avsc", lambda s: _field(s, "lat").update(type="string"))
    assert check_tree(tree) == [
        "[v1] IncidentReported.location.lat: type changed from double to string",
        "[v1] IncidentUpdated.location.lat: type changed from double to string",
    ]
    assert main([str(tree)]) == 1


def test_gate_reports_a_removed_record(tree: Path) -> None:
    (tree / "IncidentClosed.avsc").unlink()
    [problem] = check_tree(tree)
    assert problem.startswith("[v1] IncidentClosed: released in v1 but missing")


def test_gate_reports_a_released_example_that_does_not_fit_its_schema(tree: Path) -> None:
    # the encoded round trip runs on each released example; a broken one is not skipped
    _edit(
        tree / "history" / "v1" / "examples" / "Verdict.json",
        lambda doc: doc.update(decision="ABSTAIN"),
    )
    [problem] = check_tree(tree)
    assert problem.startswith("[v1] Verdict: document 0 does not fit the old schema")
    assert check_tree(tree, roundtrip=False) == []


def test_gate_checks_every_release_or_only_the_latest(tmp_path: Path) -> None:
    # v2 had an int field; v10 dropped it; the tree re-adds the name as a string
    def write(directory: Path, *fields: Schema) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Sample.avsc").write_text(json.dumps(_small(*fields)), encoding="utf-8")

    label = {"name": "label", "type": "string"}
    write(tmp_path / "history" / "v2", label, {"name": "size", "type": "int"})
    write(tmp_path / "history" / "v10", label)
    write(tmp_path, label, {"name": "size", "type": "string", "default": ""})

    assert [v.name for v in released_versions(tmp_path)] == ["v2", "v10"]
    assert check_tree(tmp_path, transitive=False) == []
    assert check_tree(tmp_path) == ["[v2] Sample.size: type changed from int to string"]


def test_a_badly_named_version_directory_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "history" / "latest").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match=r"latest: a released version directory"):
        released_versions(tmp_path)


def test_command_line_reports_a_compatible_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SCHEMAS_DIR)]) == 0
    assert "compatible with every released version" in capsys.readouterr().out
