"""Which ClickHouse rows each accepted record becomes, and the tables' column lists.

One function per record kind; :func:`rows_for` dispatches on the record's full name.
Column lists name (and type) every column an insert writes, so no insert needs a
server round trip for the table's structure; they must match the migrations in
:mod:`xborder.clickhouse` (``tests/integration/test_sink_paths.py`` compares them).

Records arrive decoded without logical types (:mod:`sinks.decode`) and rows leave as
JSON (:mod:`sinks.clickhouse`), so values stay as ClickHouse parses them: a UUID as
its text, a ``DateTime64(3)`` as seconds since the epoch (``ms / 1000``: the float's
shortest text is the exact millisecond, which ClickHouse reads as a decimal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from xborder.deadletter import (
    HEADER_ERROR,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
    MAX_ERROR_LEN,
)

Columns = tuple[tuple[str, str], ...]
Row = list[Any]

INCIDENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "UUID"),
    ("agency", "LowCardinality(String)"),
    ("incident_id", "String"),
    ("event_type", "LowCardinality(String)"),
    ("occurred_at", "DateTime64(3, 'UTC')"),
    ("reported_at", "DateTime64(3, 'UTC')"),
    ("lat", "Float64"),
    ("lon", "Float64"),
    ("admin_unit_code", "String"),
    ("admin_unit_name", "String"),
    ("placement", "LowCardinality(String)"),
    ("address", "Nullable(String)"),
    ("category", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("subject_kinds", "Array(LowCardinality(String))"),
    ("subject_roles", "Array(LowCardinality(String))"),
    ("subject_tokens", "Array(String)"),
    ("modus_operandi", "Array(String)"),
    ("narrative", "Nullable(String)"),
    ("source_system", "LowCardinality(String)"),
    ("source_topic", "LowCardinality(String)"),
    ("source_partition", "UInt16"),
    ("source_offset", "UInt64"),
)


CLOSURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "UUID"),
    ("agency", "LowCardinality(String)"),
    ("incident_id", "String"),
    ("closed_at", "DateTime64(3, 'UTC')"),
    ("outcome", "LowCardinality(String)"),
    ("reason", "Nullable(String)"),
    ("source_topic", "LowCardinality(String)"),
    ("source_partition", "UInt16"),
    ("source_offset", "UInt64"),
)


def closure_row(value: dict[str, Any], topic: str, partition: int, offset: int) -> list[Any]:
    """One ``incident_closures`` row from a decoded IncidentClosed event."""
    return [
        value["event_id"],
        value["agency"],
        value["incident_id"],
        value["closed_at"] / 1000,
        value["outcome"],
        value.get("reason"),
        topic,
        partition,
        offset,
    ]


def incident_row(
    record_name: str, value: dict[str, Any], topic: str, partition: int, offset: int
) -> list[Any]:
    """One ``incidents`` row from a decoded incident event, in INCIDENT_COLUMNS order.

    ``placement``, and the administrative unit of an event that names none, are NULL:
    ClickHouse stores the columns' defaults instead, computed from the configured polygons
    (:func:`xborder.clickhouse.apply_jurisdictions`)."""
    location = value["location"]
    subjects = value.get("subjects", [])
    code, name = location.get("admin_unit_code", ""), location.get("admin_unit_name", "")
    if not code and not name:
        code = name = None
    return [
        value["event_id"],
        value["agency"],
        value["incident_id"],
        record_name.rpartition(".")[2],
        value["occurred_at"] / 1000,
        value["reported_at"] / 1000,
        location["lat"],
        location["lon"],
        code,
        name,
        None,
        location.get("address"),
        value["category"],
        value["severity"],
        [s["kind"] for s in subjects],
        [s["role"] for s in subjects],
        [s["token"] for s in subjects],
        list(value.get("modus_operandi", [])),
        value.get("narrative"),
        value["source_system"],
        topic,
        partition,
        offset,
    ]


CORRELATION_COLUMNS: Columns = (
    ("correlation_id", "String"),
    ("a_agency", "LowCardinality(String)"),
    ("a_incident_id", "String"),
    ("a_event_id", "UUID"),
    ("b_agency", "LowCardinality(String)"),
    ("b_incident_id", "String"),
    ("b_event_id", "UUID"),
    ("score", "Float64"),
    ("threshold", "Float64"),
    ("evidence_kinds", "Array(LowCardinality(String))"),
    ("evidence_weights", "Array(Float64)"),
    ("evidence_details", "Array(String)"),
    ("created_at", "DateTime64(3, 'UTC')"),
    ("match_kind", "LowCardinality(String)"),
)

CASE_EVENT_COLUMNS: Columns = (
    ("case_event_id", "String"),
    ("case_id", "String"),
    ("event_type", "LowCardinality(String)"),
    ("incident_agencies", "Array(LowCardinality(String))"),
    ("incident_ids", "Array(String)"),
    ("correlation_ids", "Array(String)"),
    ("merged_case_ids", "Array(String)"),
    ("status", "LowCardinality(String)"),
    ("agencies", "Array(LowCardinality(String))"),
    ("at", "DateTime64(3, 'UTC')"),
    ("possible_double_report", "Bool"),
    ("sequence", "UInt64"),
    ("conclusion", "Nullable(String)"),
)

CASE_MEMBER_COLUMNS: Columns = (
    ("agency", "LowCardinality(String)"),
    ("incident_id", "String"),
    ("case_id", "String"),
    ("at", "DateTime64(3, 'UTC')"),
    ("case_event_id", "String"),
    ("sequence", "UInt64"),
)

ALERT_COLUMNS: Columns = (
    ("identifier", "String"),
    ("alert_kind", "LowCardinality(String)"),
    ("sender", "String"),
    ("sent", "DateTime64(3, 'UTC')"),
    ("status", "LowCardinality(String)"),
    ("msg_type", "LowCardinality(String)"),
    ("event", "String"),
    ("urgency", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("certainty", "LowCardinality(String)"),
    ("headline", "Nullable(String)"),
    ("area_desc", "String"),
    ("case_id", "Nullable(String)"),
    ("correlation_ids", "Array(String)"),
    ("target_agencies", "Array(LowCardinality(String))"),
)

VERDICT_COLUMNS: Columns = (
    ("event_id", "UUID"),
    ("case_id", "String"),
    ("agency", "LowCardinality(String)"),
    ("decision", "LowCardinality(String)"),
    ("reason", "String"),
    ("officer_token", "String"),
    ("officer_key_id", "LowCardinality(String)"),
    ("decided_at", "DateTime64(3, 'UTC')"),
)

CONCLUSION_COLUMNS: Columns = (
    ("conclusion_id", "String"),
    ("case_id", "String"),
    ("case_version", "UInt64"),
    ("agreed_at", "DateTime64(3, 'UTC')"),
    ("agencies", "Array(LowCardinality(String))"),
    ("incident_agencies", "Array(LowCardinality(String))"),
    ("incident_ids", "Array(String)"),
    ("incident_event_ids", "Array(UUID)"),
    ("correlation_ids", "Array(String)"),
    ("possible_double_report", "Bool"),
    ("verdict_event_ids", "Array(UUID)"),
    ("verdict_agencies", "Array(LowCardinality(String))"),
    ("verdict_officer_tokens", "Array(String)"),
    ("verdict_decided_at", "Array(DateTime64(3, 'UTC'))"),
)

REPORT_COLUMNS: Columns = (
    ("event_id", "UUID"),
    ("case_id", "String"),
    ("agency", "LowCardinality(String)"),
    ("conclusion_id", "Nullable(String)"),
    ("conclusion", "String"),
    ("officer_token", "String"),
    ("officer_key_id", "LowCardinality(String)"),
    ("requested_at", "DateTime64(3, 'UTC')"),
)

RELEASE_COLUMNS: Columns = (
    ("event_id", "UUID"),
    ("case_id", "String"),
    ("agency", "LowCardinality(String)"),
    ("incident_id", "String"),
    ("incident_event_id", "UUID"),
    ("released_at", "DateTime64(3, 'UTC')"),
    ("audience", "Array(LowCardinality(String))"),
    ("has_details", "Bool"),
    ("details_occurred_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("details_lat", "Nullable(Float64)"),
    ("details_lon", "Nullable(Float64)"),
    ("details_admin_unit_code", "Nullable(String)"),
    ("details_admin_unit_name", "Nullable(String)"),
    ("details_address", "Nullable(String)"),
    ("details_category", "LowCardinality(Nullable(String))"),
    ("details_severity", "LowCardinality(Nullable(String))"),
    ("details_subject_kinds", "Array(LowCardinality(String))"),
    ("details_subject_roles", "Array(LowCardinality(String))"),
    ("details_subject_tokens", "Array(String)"),
    ("details_subject_descriptors", "Array(Map(String, String))"),
    ("details_modus_operandi", "Array(String)"),
    ("details_narrative", "Nullable(String)"),
    ("officer_token", "String"),
    ("officer_key_id", "LowCardinality(String)"),
)
"""``has_details`` and the ``details_*`` columns hold the details the owner attached to the
release (IncidentRelease.details); without them the columns are empty or NULL."""

DEAD_LETTER_COLUMNS: Columns = (
    ("failed_at", "DateTime64(3, 'UTC')"),
    ("agency", "LowCardinality(String)"),
    ("reason", "LowCardinality(String)"),
    ("error", "String"),
    ("source_topic", "LowCardinality(String)"),
    ("source_partition", "Int32"),
    ("source_offset", "Int64"),
    ("key_bytes", "Nullable(UInt32)"),
    ("value_bytes", "Nullable(UInt32)"),
    ("deadletter_topic", "LowCardinality(String)"),
    ("deadletter_partition", "Int32"),
    ("deadletter_offset", "Int64"),
)
"""A message of the dead-letter topic: its headers and sizes, never its bytes."""

TABLE_COLUMNS: dict[str, Columns] = {
    "incidents": INCIDENT_COLUMNS,
    "incident_closures": CLOSURE_COLUMNS,
    "correlations": CORRELATION_COLUMNS,
    "case_events": CASE_EVENT_COLUMNS,
    "case_members": CASE_MEMBER_COLUMNS,
    "alerts": ALERT_COLUMNS,
    "verdicts": VERDICT_COLUMNS,
    "case_conclusions": CONCLUSION_COLUMNS,
    "case_reports": REPORT_COLUMNS,
    "incident_releases": RELEASE_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
}


def correlation_row(value: dict[str, Any]) -> Row:
    """One ``correlations`` row from a Correlation record."""
    a, b = value["incident_a"], value["incident_b"]
    evidence = value.get("evidence", [])
    return [
        value["correlation_id"],
        a["agency"],
        a["incident_id"],
        a["event_id"],
        b["agency"],
        b["incident_id"],
        b["event_id"],
        value["score"],
        value["threshold"],
        [e["kind"] for e in evidence],
        [e["weight"] for e in evidence],
        [e["detail"] for e in evidence],
        value["created_at"] / 1000,
        value.get("match_kind", "IDENTITY"),
    ]


def case_rows(value: dict[str, Any]) -> list[tuple[str, Row]]:
    """A ``case_events`` row, and one ``case_members`` row per incident the event names.

    ``case_members`` keeps the latest case of each incident (ReplacingMergeTree on the
    case stage's ``sequence``), so after a merge the absorbed incidents point at the
    surviving case.
    """
    incidents = value.get("incidents", [])
    event_row: Row = [
        value["case_event_id"],
        value["case_id"],
        value["event_type"],
        [i["agency"] for i in incidents],
        [i["incident_id"] for i in incidents],
        list(value.get("correlation_ids", [])),
        list(value.get("merged_case_ids", [])),
        value["status"],
        list(value.get("agencies", [])),
        value["at"] / 1000,
        bool(value.get("possible_double_report", False)),
        value.get("sequence", 0),
        value.get("conclusion"),
    ]
    members = [
        (
            "case_members",
            [
                i["agency"],
                i["incident_id"],
                value["case_id"],
                value["at"] / 1000,
                value["case_event_id"],
                value.get("sequence", 0),
            ],
        )
        for i in incidents
    ]
    return [("case_events", event_row), *members]


def alert_row(value: dict[str, Any]) -> Row:
    """One ``alerts`` row from an Alert record (CAP fields flattened)."""
    area = value.get("area") or {}
    return [
        value["identifier"],
        value["alert_kind"],
        value["sender"],
        value["sent"] / 1000,
        value["status"],
        value["msgType"],
        value["event"],
        value["urgency"],
        value["severity"],
        value["certainty"],
        value.get("headline"),
        area.get("areaDesc", ""),
        value.get("case_id"),
        list(value.get("correlation_ids", [])),
        list(value.get("target_agencies", [])),
    ]


def verdict_row(value: dict[str, Any]) -> Row:
    """One ``verdicts`` row from an accepted Verdict: the lifecycle stage rewrote its
    target to the case it counted for, so ``target_id`` is the case id."""
    return [
        value["event_id"],
        value["target_id"],
        value["agency"],
        value["decision"],
        value["reason"],
        value["officer_token"],
        value["officer_key_id"],
        value["decided_at"] / 1000,
    ]


def conclusion_row(value: dict[str, Any]) -> Row:
    """One ``case_conclusions`` row; the agreed incidents and verdicts as parallel arrays."""
    incidents, verdicts = value["incidents"], value["verdicts"]
    return [
        value["conclusion_id"],
        value["case_id"],
        value["case_version"],
        value["agreed_at"] / 1000,
        list(value["agencies"]),
        [i["agency"] for i in incidents],
        [i["incident_id"] for i in incidents],
        [i["event_id"] for i in incidents],
        list(value.get("correlation_ids", [])),
        bool(value.get("possible_double_report", False)),
        [v["event_id"] for v in verdicts],
        [v["agency"] for v in verdicts],
        [v["officer_token"] for v in verdicts],
        [v["decided_at"] / 1000 for v in verdicts],
    ]


def report_row(value: dict[str, Any]) -> Row:
    """One ``case_reports`` row from an accepted CaseReport."""
    return [
        value["event_id"],
        value["case_id"],
        value["agency"],
        value.get("conclusion_id"),
        value["conclusion"],
        value["officer_token"],
        value["officer_key_id"],
        value["requested_at"] / 1000,
    ]


def release_row(value: dict[str, Any]) -> Row:
    """One ``incident_releases`` row from an accepted IncidentRelease (audience filled in,
    the details the owner attached, if any, in the ``details_*`` columns)."""
    incident = value["incident"]
    details = value.get("details")
    officer = [value.get("officer_token") or "", value.get("officer_key_id") or ""]
    row = [
        value["event_id"],
        value["case_id"],
        value["agency"],
        incident["incident_id"],
        incident["event_id"],
        value["released_at"] / 1000,
        list(value.get("audience", [])),
        details is not None,
    ]
    if details is None:
        return [*row, *[None] * 8, [], [], [], [], [], None, *officer]
    location, subjects = details["location"], details.get("subjects", [])
    return [
        *row,
        details["occurred_at"] / 1000,
        location["lat"],
        location["lon"],
        location["admin_unit_code"],
        location["admin_unit_name"],
        location.get("address"),
        details["category"],
        details["severity"],
        [s["kind"] for s in subjects],
        [s["role"] for s in subjects],
        [s["token"] for s in subjects],
        [dict(s.get("descriptors", {})) for s in subjects],
        list(details.get("modus_operandi", [])),
        details.get("narrative"),
        *officer,
    ]


def rows_for(
    record_name: str, value: dict[str, Any], topic: str, partition: int, offset: int
) -> list[tuple[str, Row]]:
    """The (table, row) pairs one accepted record becomes."""
    kind = record_name.rpartition(".")[2]
    if kind in ("IncidentReported", "IncidentUpdated"):
        return [("incidents", incident_row(record_name, value, topic, partition, offset))]
    if kind == "IncidentClosed":
        return [("incident_closures", closure_row(value, topic, partition, offset))]
    if kind == "Correlation":
        return [("correlations", correlation_row(value))]
    if kind == "CaseEvent":
        return case_rows(value)
    if kind == "Alert":
        return [("alerts", alert_row(value))]
    if kind == "Verdict":
        return [("verdicts", verdict_row(value))]
    if kind == "CaseConclusion":
        return [("case_conclusions", conclusion_row(value))]
    if kind == "CaseReport":
        return [("case_reports", report_row(value))]
    if kind == "IncidentRelease":
        return [("incident_releases", release_row(value))]
    return []


_AGENCY_TOPIC = re.compile(r"(?:^|\.)(?:incidents|verdicts)\.([^.]+)$")
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\[\]-]{0,63}")
# Ids (hex case and correlation ids, UUID event ids) often hold a run of seven digits;
# they are matched whole first so that only numbers standing alone are masked.
_DIGITS = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    r"|\b(?=[0-9a-f]*[a-f])[0-9a-f]{16,}\b|\d{7,}"
)
_EMAIL = re.compile(r"[^\s'\"<>;,]+@[^\s'\"<>;,]+")


def _mask_quoted(match: re.Match[str]) -> str:
    text = match.group(1) if match.group(1) is not None else match.group(2)
    if not text or _PLAIN_NAME.fullmatch(text):
        return match.group(0)
    return f"<{len(text)} chars>"


def mask_error(error: str) -> str:
    """The error text of a dead letter as stored: quoted values that are not plain names
    (field paths, agency ids, enum symbols stay) become ``<N chars>``, runs of seven or
    more digits (phone or ID numbers) ``<N digits>``, e-mail addresses ``<e-mail>``. The
    worker's messages name fields rather than quote values; this is a second line."""
    error = _EMAIL.sub("<e-mail>", error[:MAX_ERROR_LEN])
    error = _QUOTED.sub(_mask_quoted, error)
    return _DIGITS.sub(_mask_digits, error)


def _mask_digits(match: re.Match[str]) -> str:
    text = match.group(0)
    return f"<{len(text)} digits>" if text.isdigit() else text


def agency_of_topic(topic: str) -> str:
    """The agency whose own topic (``incidents.<agency>``, ``verdicts.<agency>``) ``topic``
    is; empty for the project's internal topics."""
    found = _AGENCY_TOPIC.search(topic)
    return "" if found is None or found.group(1) == "accepted" else found.group(1)


def dead_letter_row(
    headers: Iterable[tuple[str, bytes]] | None,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int,
    topic: str,
    partition: int,
    offset: int,
) -> Row:
    """One ``dead_letters`` row from a message of the dead-letter topic (at ``topic``
    [``partition``]@``offset``, broker timestamp ``timestamp_ms``): the reason, masked
    error text and source position of its headers (:mod:`xborder.deadletter`), the sizes
    of its key and value (NULL when absent), never their bytes."""
    found = {name: raw.decode("utf-8", "replace") for name, raw in headers or ()}
    source_topic = found.get(HEADER_TOPIC, "")
    return [
        timestamp_ms / 1000,
        agency_of_topic(source_topic),
        found.get(HEADER_REASON, "unknown"),
        mask_error(found.get(HEADER_ERROR, "")),
        source_topic,
        _int(found.get(HEADER_PARTITION)),
        _int(found.get(HEADER_OFFSET)),
        None if key is None else len(key),
        None if value is None else len(value),
        topic,
        partition,
        offset,
    ]


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else -1
    except ValueError:
        return -1
