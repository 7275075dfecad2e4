"""ClickHouse access: one client factory (embedded chDB or a server) and the migrations.

Embedded mode opens ``chdb:///<dir>``; chDB lets one process own a data directory,
so in embedded mode the sink owns it and other commands run when the sink is stopped.
Migrations are idempotent and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from xborder.agencies import AgenciesConfig, load_agencies
from xborder.errors import ConfigurationError, ServiceUnavailableError
from xborder.settings import Settings, mask_url

logger = logging.getLogger(__name__)


CASE_EVENT_ORDER = (
    "(sequence, multiIf(event_type IN ('CREATED', 'INCIDENT_ADDED', 'MERGED')"
    " OR (event_type = 'STATUS_CHANGED' AND notEmpty(correlation_ids)), 0,"
    " status = 'CONCLUDED', 3, status = 'CONFIRMED', 2, 1), at)"
)
"""The order of a case's events, as a ClickHouse tuple: the last gives the current status.

``sequence`` is the worker's one order of every case change. Ties are for events that
lack it (0, written before v2) or that the lifecycle machine stamped alone (with the
sequence of the membership change they judged): the case stage's changes (and its
STATUS_CHANGED naming a correlation) come first, then the lifecycle's statuses by how
final they are (a case leaves CONFIRMED and CONCLUDED only on a new link, so a new
sequence), then event time."""

CASE_OPENINGS = (
    "SELECT case_id, min(opened) AS opened_at FROM ("
    " SELECT case_id, min(at) AS opened FROM case_events GROUP BY case_id"
    " UNION ALL"
    " SELECT m.case_id AS case_id, a.opened AS opened FROM ("
    "  SELECT case_id, arrayJoin(merged_case_ids) AS absorbed_id FROM case_events"
    "  WHERE event_type = 'MERGED') AS m"
    " INNER JOIN (SELECT case_id, min(at) AS opened FROM case_events GROUP BY case_id) AS a"
    " ON a.case_id = m.absorbed_id"
    ") GROUP BY case_id"
)
"""When each case opened: its first event, or that of a case it absorbed (the case stage
renames a case when a smaller incident joins, and merges cases) if earlier."""

INCIDENT_VERSION = "(event_type = 'IncidentUpdated', source_offset, event_id)"
"""Which of an incident's events is its latest, as a ClickHouse tuple: an update beats
the report, and updates follow their order on the agency's topic (an incident's events
share a partition: the producer keys them by incident id). ``source_offset`` is the
position on ``incidents.<agency>``, not on ``incidents.accepted``."""

INCIDENT_VERSION_COLUMNS = (
    "event_id",
    "event_type",
    "occurred_at",
    "reported_at",
    "lat",
    "lon",
    "admin_unit_code",
    "admin_unit_name",
    "placement",
    "address",
    "category",
    "severity",
    "subject_kinds",
    "subject_roles",
    "subject_tokens",
    "modus_operandi",
    "narrative",
    "source_system",
    "source_topic",
    "source_partition",
    "source_offset",
)
CORRELATION_VERSION_COLUMNS = (
    "match_kind",
    "a_agency",
    "a_incident_id",
    "a_event_id",
    "b_agency",
    "b_incident_id",
    "b_event_id",
    "score",
    "threshold",
    "evidence_kinds",
    "evidence_weights",
    "evidence_details",
    "created_at",
)
ALERT_VERSION_COLUMNS = (
    "alert_kind",
    "sender",
    "sent",
    "status",
    "msg_type",
    "event",
    "urgency",
    "severity",
    "certainty",
    "headline",
    "area_desc",
    "case_id",
    "correlation_ids",
    "target_agencies",
)
CONCLUSION_VERSION_COLUMNS = (
    "case_version",
    "agreed_at",
    "agencies",
    "incident_agencies",
    "incident_ids",
    "incident_event_ids",
    "correlation_ids",
    "possible_double_report",
    "verdict_event_ids",
    "verdict_agencies",
    "verdict_officer_tokens",
    "verdict_decided_at",
)
"""The columns migration 10's ``_current`` views take from each entity's latest row
(these lists are part of a released migration: leave them as they are)."""

CELLS_PER_DEGREE = 100
"""Spatial cells of the hot-spot views: 0.01 degree of latitude by 0.01 of longitude
(about 1.1 km by 1.1 km at the latitude of the Mekong delta)."""
CELL_CENTRE = (
    f"(cell_lat + 0.5) / {CELLS_PER_DEGREE} AS centre_lat,"
    f" (cell_lon + 0.5) / {CELLS_PER_DEGREE} AS centre_lon"
)

INCIDENT_DAILY_COUNTS = (
    "SELECT toDate(occurred_at) AS day, agency, category, admin_unit_code, admin_unit_name,"
    " uniqExactState(incident_id) AS incidents, uniqExactState(event_id) AS events"
    " FROM incidents GROUP BY day, agency, category, admin_unit_code, admin_unit_name"
)
INCIDENT_CELLS_DAILY = (
    f"SELECT toDate(occurred_at) AS day, toInt32(floor(lat * {CELLS_PER_DEGREE})) AS cell_lat,"
    f" toInt32(floor(lon * {CELLS_PER_DEGREE})) AS cell_lon, agency, placement, category,"
    " uniqExactState(incident_id) AS incidents"
    " FROM incidents GROUP BY day, cell_lat, cell_lon, agency, placement, category"
)
"""What the materialized views of migration 10 aggregate from each insert into
``incidents`` (and, once, from the rows already there). Distinct-count states, so an
event delivered twice, or a backfill overlapping the views' first inserts, counts once."""


def _latest(columns: tuple[str, ...]) -> str:
    """``argMax(c, version) AS c`` for each column: the value of the row whose ``version``
    (a column of the subquery) is highest."""
    return ",\n".join(f"argMax({c}, version) AS {c}" for c in columns)


def _columns(table: str, columns: tuple[str, ...]) -> str:
    return ",\n".join(f"{table}.{c} AS {c}" for c in columns)


@dataclass(frozen=True)
class Migration:
    """One schema change, applied once, in version order."""

    version: int
    description: str
    statements: tuple[str, ...]


def _audit_log_view(release_officer: str) -> str:
    """The ``audit_log`` view; ``release_officer`` gives a release's officer token and key
    id (migration 12 had none, migration 13 reads the columns it adds)."""
    return f"""
            CREATE OR REPLACE VIEW audit_log AS
            SELECT * FROM (
                SELECT
                    any(decided_at) AS at,
                    'verdict' AS action,
                    'accepted' AS outcome,
                    any(agency) AS agency,
                    any(officer_token) AS officer_token,
                    any(officer_key_id) AS officer_key_id,
                    any(case_id) AS case_id,
                    toString(event_id) AS event_id,
                    concat(any(decision), if(any(reason) = '', '', concat(': ', any(reason))))
                        AS detail,
                    'verdicts' AS source,
                    min(ingested_at) AS recorded_at
                FROM verdicts
                GROUP BY event_id
                UNION ALL
                SELECT
                    any(requested_at),
                    'report',
                    'accepted',
                    any(agency),
                    any(officer_token),
                    any(officer_key_id),
                    any(case_id),
                    toString(event_id),
                    concat('conclusion ', ifNull(any(conclusion_id), '(agreed at the time)')),
                    'case_reports',
                    min(ingested_at)
                FROM case_reports
                GROUP BY event_id
                UNION ALL
                SELECT
                    any(released_at),
                    'release',
                    'accepted',
                    any(agency),
                    {release_officer},
                    any(case_id),
                    toString(event_id),
                    concat(
                        'incident ', any(incident_id), ' to ',
                        arrayStringConcat(any(audience), ','),
                        if(any(has_details), ' (details attached)', ' (by reference)')
                    ),
                    'incident_releases',
                    min(ingested_at)
                FROM incident_releases
                GROUP BY event_id
                UNION ALL
                SELECT
                    failed_at,
                    'refused input',
                    concat('refused: ', reason),
                    agency,
                    '',
                    '',
                    '',
                    concat(source_topic, '[', toString(source_partition), ']@',
                           toString(source_offset)),
                    error,
                    'dead_letters',
                    failed_at
                FROM dead_letters_current
                WHERE match(source_topic, '(^|[.])verdicts[.]')
            )
            ORDER BY at, event_id
            COMMENT 'Audit: every verdict, report and release the lifecycle accepted (who, what,
 when) and every refused verification input (why, where); no FINAL needed'
            """


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "incidents table",
        (
            """
            CREATE TABLE IF NOT EXISTS incidents (
                event_id UUID,
                agency LowCardinality(String),
                incident_id String,
                event_type LowCardinality(String),
                occurred_at DateTime64(3, 'UTC'),
                reported_at DateTime64(3, 'UTC'),
                lat Float64,
                lon Float64,
                admin_unit_code String,
                admin_unit_name String,
                address Nullable(String),
                category LowCardinality(String),
                severity LowCardinality(String),
                subject_kinds Array(LowCardinality(String)),
                subject_roles Array(LowCardinality(String)),
                subject_tokens Array(String),
                modus_operandi Array(String),
                narrative Nullable(String),
                source_system LowCardinality(String),
                source_topic LowCardinality(String),
                source_partition UInt16,
                source_offset UInt64,
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            PARTITION BY toYYYYMM(occurred_at)
            ORDER BY (agency, incident_id, event_id)
            COMMENT 'One row per incident event; duplicates collapse on the sort key: use FINAL'
            """,
        ),
    ),
    Migration(
        2,
        "incident_closures table",
        (
            """
            CREATE TABLE IF NOT EXISTS incident_closures (
                event_id UUID,
                agency LowCardinality(String),
                incident_id String,
                closed_at DateTime64(3, 'UTC'),
                outcome LowCardinality(String),
                reason Nullable(String),
                source_topic LowCardinality(String),
                source_partition UInt16,
                source_offset UInt64,
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY (agency, incident_id, event_id)
            COMMENT 'IncidentClosed events; join on (agency, incident_id) with incidents'
            """,
        ),
    ),
    Migration(
        3,
        "correlations, cases and alerts",
        (
            """
            CREATE TABLE IF NOT EXISTS correlations (
                correlation_id String,
                a_agency LowCardinality(String),
                a_incident_id String,
                a_event_id UUID,
                b_agency LowCardinality(String),
                b_incident_id String,
                b_event_id UUID,
                score Float64,
                threshold Float64,
                evidence_kinds Array(LowCardinality(String)),
                evidence_weights Array(Float64),
                evidence_details Array(String),
                created_at DateTime64(3, 'UTC'),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY correlation_id
            COMMENT 'Cross-border links with their evidence; correlation_id is deterministic'
            """,
            """
            CREATE TABLE IF NOT EXISTS case_events (
                case_event_id String,
                case_id String,
                event_type LowCardinality(String),
                incident_agencies Array(LowCardinality(String)),
                incident_ids Array(String),
                correlation_ids Array(String),
                merged_case_ids Array(String),
                status LowCardinality(String),
                agencies Array(LowCardinality(String)),
                at DateTime64(3, 'UTC'),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY (case_id, case_event_id)
            COMMENT 'The event-sourced history of every cross-border case'
            """,
            """
            CREATE TABLE IF NOT EXISTS case_members (
                agency LowCardinality(String),
                incident_id String,
                case_id String,
                at DateTime64(3, 'UTC'),
                case_event_id String
            )
            ENGINE = ReplacingMergeTree(at)
            ORDER BY (agency, incident_id)
            COMMENT 'The current case of each linked incident: query with FINAL'
            """,
            """
            CREATE TABLE IF NOT EXISTS alerts (
                identifier String,
                alert_kind LowCardinality(String),
                sender String,
                sent DateTime64(3, 'UTC'),
                status LowCardinality(String),
                msg_type LowCardinality(String),
                event String,
                urgency LowCardinality(String),
                severity LowCardinality(String),
                certainty LowCardinality(String),
                headline Nullable(String),
                area_desc String,
                case_id Nullable(String),
                correlation_ids Array(String),
                target_agencies Array(LowCardinality(String)),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY identifier
            COMMENT 'Alerts as sent to monitoring consumers (CAP 1.2 fields flattened)'
            """,
        ),
    ),
    Migration(
        4,
        "case_members versioned by the case stage's sequence",
        (
            "DROP TABLE IF EXISTS case_members",
            """
            CREATE TABLE case_members (
                agency LowCardinality(String),
                incident_id String,
                case_id String,
                at DateTime64(3, 'UTC'),
                case_event_id String,
                sequence UInt64
            )
            ENGINE = ReplacingMergeTree(sequence)
            ORDER BY (agency, incident_id)
            COMMENT 'The current case of each linked incident (FINAL); rebuilt by replaying cases'
            """,
        ),
    ),
    Migration(
        5,
        "match kinds: same-occurrence correlations and possible double reports",
        (
            "ALTER TABLE correlations ADD COLUMN IF NOT EXISTS"
            " match_kind LowCardinality(String) DEFAULT 'IDENTITY' AFTER created_at",
            "ALTER TABLE case_events ADD COLUMN IF NOT EXISTS"
            " possible_double_report Bool DEFAULT false AFTER at",
        ),
    ),
    Migration(
        6,
        "joint verification: verdicts, conclusions, reports, releases and case views",
        (
            "ALTER TABLE case_events ADD COLUMN IF NOT EXISTS"
            " sequence UInt64 DEFAULT 0 AFTER possible_double_report",
            "ALTER TABLE case_events ADD COLUMN IF NOT EXISTS"
            " conclusion Nullable(String) AFTER sequence",
            """
            CREATE TABLE IF NOT EXISTS verdicts (
                event_id UUID,
                case_id String,
                agency LowCardinality(String),
                decision LowCardinality(String),
                reason String,
                officer_token String,
                officer_key_id LowCardinality(String),
                decided_at DateTime64(3, 'UTC'),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY (case_id, agency, event_id)
            COMMENT 'Verdicts the case lifecycle accepted, each counted for case_id'
            """,
            """
            CREATE TABLE IF NOT EXISTS case_conclusions (
                conclusion_id String,
                case_id String,
                case_version UInt64,
                agreed_at DateTime64(3, 'UTC'),
                agencies Array(LowCardinality(String)),
                incident_agencies Array(LowCardinality(String)),
                incident_ids Array(String),
                incident_event_ids Array(UUID),
                correlation_ids Array(String),
                possible_double_report Bool,
                verdict_event_ids Array(UUID),
                verdict_agencies Array(LowCardinality(String)),
                verdict_officer_tokens Array(String),
                verdict_decided_at Array(DateTime64(3, 'UTC')),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY (case_id, conclusion_id)
            COMMENT 'Agreed conclusions: the facts all involved agencies confirmed, and how'
            """,
            """
            CREATE TABLE IF NOT EXISTS case_reports (
                event_id UUID,
                case_id String,
                agency LowCardinality(String),
                conclusion_id Nullable(String),
                conclusion String,
                officer_token String,
                officer_key_id LowCardinality(String),
                requested_at DateTime64(3, 'UTC'),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY (case_id, event_id)
            COMMENT 'Accepted reports of an agreed conclusion to the agency superiors'
            """,
            """
            CREATE TABLE IF NOT EXISTS incident_releases (
                event_id UUID,
                case_id String,
                agency LowCardinality(String),
                incident_id String,
                incident_event_id UUID,
                released_at DateTime64(3, 'UTC'),
                audience Array(LowCardinality(String)),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY (case_id, agency, incident_id, event_id)
            COMMENT 'Accepted releases of incident details to the agencies in audience'
            """,
            f"""
            CREATE OR REPLACE VIEW cases_current AS
            SELECT
                e.case_id AS case_id,
                e.status AS status,
                e.agencies AS agencies,
                e.possible_double_report AS possible_double_report,
                o.opened_at AS opened_at,
                e.last_change_at AS last_change_at,
                e.last_sequence AS last_sequence,
                e.events AS events
            FROM (
                SELECT
                    case_id,
                    argMax(status, event_order) AS status,
                    argMax(agencies, event_order) AS agencies,
                    max(possible_double_report) AS possible_double_report,
                    max(at) AS last_change_at,
                    max(sequence) AS last_sequence,
                    uniqExact(case_event_id) AS events
                FROM (SELECT *, {CASE_EVENT_ORDER} AS event_order FROM case_events)
                GROUP BY case_id
            ) AS e
            INNER JOIN ({CASE_OPENINGS}) AS o ON o.case_id = e.case_id
            LEFT JOIN (
                SELECT
                    arrayJoin(merged_case_ids) AS absorbed_id,
                    max(sequence) AS at_sequence,
                    1 AS absorbed
                FROM case_events
                WHERE event_type = 'MERGED'
                GROUP BY absorbed_id
            ) AS m ON m.absorbed_id = e.case_id
            WHERE ifNull(m.absorbed, 0) = 0 OR e.last_sequence > m.at_sequence
            COMMENT 'One row per live case: its current status and agencies (no FINAL needed)'
            """,
            f"""
            CREATE OR REPLACE VIEW time_to_agreement AS
            SELECT
                c.case_id AS case_id,
                c.conclusion_id AS conclusion_id,
                c.case_version AS case_version,
                agency,
                o.opened_at AS opened_at,
                decided_at,
                c.agreed_at AS agreed_at,
                (toUnixTimestamp64Milli(decided_at) - toUnixTimestamp64Milli(o.opened_at))
                    / 1000 AS seconds_to_verdict,
                (toUnixTimestamp64Milli(c.agreed_at) - toUnixTimestamp64Milli(o.opened_at))
                    / 1000 AS seconds_to_agreement
            FROM case_conclusions AS c FINAL
            ARRAY JOIN c.verdict_agencies AS agency, c.verdict_decided_at AS decided_at
            INNER JOIN ({CASE_OPENINGS}) AS o ON o.case_id = c.case_id
            COMMENT 'Per conclusion and agency: seconds from opening to verdict and agreement'
            """,
            f"""
            CREATE OR REPLACE VIEW case_timeline AS
            SELECT
                case_id,
                sequence,
                at,
                event_type,
                status,
                agencies,
                incident_agencies,
                incident_ids,
                correlation_ids,
                merged_case_ids,
                possible_double_report,
                conclusion,
                case_event_id
            FROM case_events FINAL
            ORDER BY case_id, {CASE_EVENT_ORDER}
            COMMENT 'Each case event once, in the order that decides the case status'
            """,
        ),
    ),
    Migration(
        7,
        "hit, then release: what each agency may see of the other agencies' incidents",
        (
            """
            CREATE OR REPLACE VIEW case_hits AS
            SELECT
                c.case_id AS case_id,
                viewer,
                m.agency AS owner,
                m.incident_id AS incident_id,
                c.status AS status,
                c.possible_double_report AS possible_double_report,
                (c.case_id, m.agency, m.incident_id, viewer) IN (
                    SELECT case_id, agency, incident_id, arrayJoin(audience)
                    FROM incident_releases FINAL
                ) AS released
            FROM (SELECT agency, incident_id, case_id FROM case_members FINAL) AS m
            INNER JOIN cases_current AS c ON c.case_id = m.case_id
            ARRAY JOIN c.agencies AS viewer
            WHERE viewer != m.agency
            COMMENT 'The hit: for each agency, the other agencies'' incidents in its cases,
 without their details; released says whether the owner released them to it'
            """,
            """
            CREATE OR REPLACE VIEW released_incidents AS
            SELECT
                r.case_id AS case_id,
                viewer,
                r.agency AS owner,
                r.incident_id AS incident_id,
                r.incident_event_id AS incident_event_id,
                r.released_at AS released_at,
                i.category AS category,
                i.severity AS severity,
                i.occurred_at AS occurred_at,
                i.admin_unit_name AS admin_unit_name,
                i.address AS address,
                i.modus_operandi AS modus_operandi,
                i.narrative AS narrative
            FROM incident_releases AS r FINAL
            ARRAY JOIN r.audience AS viewer
            LEFT JOIN (
                SELECT event_id, category, severity, occurred_at, admin_unit_name, address,
                       modus_operandi, narrative
                FROM incidents FINAL
            ) AS i ON i.event_id = r.incident_event_id
            WHERE viewer != r.agency
            COMMENT 'Details of incidents their owner released, per agency allowed to see them'
            """,
            """
            CREATE OR REPLACE VIEW case_escalations AS
            SELECT
                case_id,
                count() AS escalations,
                min(sent) AS first_sent,
                max(sent) AS last_sent,
                argMax(headline, sent) AS last_headline
            FROM alerts FINAL
            WHERE alert_kind = 'VERIFICATION_OVERDUE' AND case_id IS NOT NULL
            GROUP BY case_id
            COMMENT 'Overdue joint verifications: escalations raised per case'
            """,
        ),
    ),
    Migration(
        8,
        "released details on the release itself: incident_releases details columns",
        (
            """
            ALTER TABLE incident_releases
                ADD COLUMN IF NOT EXISTS has_details Bool,
                ADD COLUMN IF NOT EXISTS details_occurred_at Nullable(DateTime64(3, 'UTC')),
                ADD COLUMN IF NOT EXISTS details_lat Nullable(Float64),
                ADD COLUMN IF NOT EXISTS details_lon Nullable(Float64),
                ADD COLUMN IF NOT EXISTS details_admin_unit_code Nullable(String),
                ADD COLUMN IF NOT EXISTS details_admin_unit_name Nullable(String),
                ADD COLUMN IF NOT EXISTS details_address Nullable(String),
                ADD COLUMN IF NOT EXISTS details_category LowCardinality(Nullable(String)),
                ADD COLUMN IF NOT EXISTS details_severity LowCardinality(Nullable(String)),
                ADD COLUMN IF NOT EXISTS details_subject_kinds Array(LowCardinality(String)),
                ADD COLUMN IF NOT EXISTS details_subject_roles Array(LowCardinality(String)),
                ADD COLUMN IF NOT EXISTS details_subject_tokens Array(String),
                ADD COLUMN IF NOT EXISTS details_subject_descriptors Array(Map(String, String)),
                ADD COLUMN IF NOT EXISTS details_modus_operandi Array(String),
                ADD COLUMN IF NOT EXISTS details_narrative Nullable(String)
            """,
            """
            CREATE OR REPLACE VIEW released_incidents AS
            SELECT
                r.case_id AS case_id,
                viewer,
                r.agency AS owner,
                r.incident_id AS incident_id,
                r.incident_event_id AS incident_event_id,
                r.released_at AS released_at,
                if(r.has_details, 'release', 'incident event') AS details_from,
                if(r.has_details, r.details_category, i.category) AS category,
                if(r.has_details, r.details_severity, i.severity) AS severity,
                if(r.has_details, r.details_occurred_at, i.occurred_at) AS occurred_at,
                if(r.has_details, r.details_admin_unit_name, i.admin_unit_name)
                    AS admin_unit_name,
                if(r.has_details, r.details_address, i.address) AS address,
                if(r.has_details, r.details_modus_operandi, i.modus_operandi) AS modus_operandi,
                if(r.has_details, r.details_narrative, i.narrative) AS narrative,
                r.details_subject_kinds AS subject_kinds,
                r.details_subject_tokens AS subject_tokens,
                r.details_subject_descriptors AS subject_descriptors
            FROM incident_releases AS r FINAL
            ARRAY JOIN r.audience AS viewer
            LEFT JOIN (
                SELECT event_id, category, severity, occurred_at, admin_unit_name, address,
                       modus_operandi, narrative
                FROM incidents FINAL
            ) AS i ON i.event_id = r.incident_event_id
            WHERE viewer != r.agency
            COMMENT 'Details of incidents their owner released, per agency allowed to see them:
 those attached to the release, else those of the named event'
            """,
        ),
    ),
    Migration(
        9,
        "incidents.placement: where the location lies with respect to the jurisdictions",
        (
            """
            ALTER TABLE incidents
                ADD COLUMN IF NOT EXISTS placement LowCardinality(String) DEFAULT ''
                AFTER admin_unit_name
            """,
        ),
    ),
    Migration(
        10,
        "analyst views: current state without FINAL, incident subjects, dead letters,"
        " daily counts and spatial cells",
        (
            f"""
            CREATE OR REPLACE VIEW incidents_current AS
            SELECT
                i.agency AS agency,
                i.incident_id AS incident_id,
                {_columns("i", INCIDENT_VERSION_COLUMNS)},
                i.versions AS versions,
                c.closed = 1 AS closed,
                if(c.closed = 1, c.closed_at, NULL) AS closed_at,
                c.outcome AS outcome
            FROM (
                SELECT
                    agency,
                    incident_id,
                    {_latest(INCIDENT_VERSION_COLUMNS)},
                    uniqExact(version.3) AS versions
                FROM (
                    SELECT *, {INCIDENT_VERSION} AS version FROM incidents
                )
                GROUP BY agency, incident_id
            ) AS i
            LEFT JOIN (
                SELECT
                    agency,
                    incident_id,
                    1 AS closed,
                    argMax(closed_at, version) AS closed_at,
                    argMax(outcome, version) AS outcome
                FROM (SELECT *, (closed_at, event_id) AS version FROM incident_closures)
                GROUP BY agency, incident_id
            ) AS c ON c.agency = i.agency AND c.incident_id = i.incident_id
            COMMENT 'One row per incident: its latest event (no FINAL needed), closed or not'
            """,
            """
            CREATE OR REPLACE VIEW incident_subjects AS
            SELECT
                agency,
                incident_id,
                event_id,
                occurred_at,
                category,
                severity,
                admin_unit_code,
                admin_unit_name,
                placement,
                closed,
                token,
                kind,
                role
            FROM incidents_current
            ARRAY JOIN subject_tokens AS token, subject_kinds AS kind, subject_roles AS role
            COMMENT 'One row per subject of each incident''s latest event (pseudonymous tokens)'
            """,
            f"""
            CREATE OR REPLACE VIEW correlations_current AS
            SELECT
                correlation_id,
                {_latest(CORRELATION_VERSION_COLUMNS)}
            FROM (SELECT *, (created_at, score) AS version FROM correlations)
            GROUP BY correlation_id
            COMMENT 'One row per correlation (its newest scoring), no FINAL needed'
            """,
            """
            CREATE OR REPLACE VIEW correlation_evidence AS
            SELECT
                correlation_id,
                match_kind,
                a_agency,
                a_incident_id,
                b_agency,
                b_incident_id,
                score,
                created_at,
                evidence_kind,
                evidence_weight,
                evidence_detail
            FROM correlations_current
            ARRAY JOIN
                evidence_kinds AS evidence_kind,
                evidence_weights AS evidence_weight,
                evidence_details AS evidence_detail
            COMMENT 'One row per piece of evidence of each correlation'
            """,
            """
            CREATE OR REPLACE VIEW case_members_current AS
            SELECT
                agency,
                incident_id,
                argMax(case_id, version) AS case_id,
                argMax(at, version) AS at,
                argMax(case_event_id, version) AS case_event_id,
                max(sequence) AS sequence
            FROM (SELECT *, (sequence, at, case_event_id) AS version FROM case_members)
            GROUP BY agency, incident_id
            COMMENT 'The current case of each linked incident, no FINAL needed'
            """,
            f"""
            CREATE OR REPLACE VIEW alerts_current AS
            SELECT
                identifier,
                {_latest(ALERT_VERSION_COLUMNS)}
            FROM (SELECT *, sent AS version FROM alerts)
            GROUP BY identifier
            COMMENT 'One row per alert (an alert sent to several agencies is one row)'
            """,
            """
            CREATE OR REPLACE VIEW verdicts_current AS
            SELECT
                case_id,
                agency,
                argMax(event_id, version) AS event_id,
                argMax(decision, version) AS decision,
                argMax(reason, version) AS reason,
                argMax(officer_token, version) AS officer_token,
                argMax(officer_key_id, version) AS officer_key_id,
                argMax(decided_at, version) AS decided_at,
                uniqExact(version.2) AS verdicts
            FROM (SELECT *, (decided_at, event_id) AS version FROM verdicts)
            GROUP BY case_id, agency
            COMMENT 'Each agency''s newest verdict on each case, and how many it gave'
            """,
            f"""
            CREATE OR REPLACE VIEW case_conclusions_current AS
            SELECT
                case_id,
                conclusion_id,
                {_latest(CONCLUSION_VERSION_COLUMNS)}
            FROM (SELECT *, agreed_at AS version FROM case_conclusions)
            GROUP BY case_id, conclusion_id
            COMMENT 'One row per agreed conclusion, no FINAL needed'
            """,
            """
            CREATE OR REPLACE VIEW case_reports_current AS
            SELECT
                event_id,
                any(case_id) AS case_id,
                any(agency) AS agency,
                any(conclusion_id) AS conclusion_id,
                any(conclusion) AS conclusion,
                any(officer_token) AS officer_token,
                any(officer_key_id) AS officer_key_id,
                any(requested_at) AS requested_at
            FROM case_reports
            GROUP BY event_id
            COMMENT 'One row per accepted report to superiors, no FINAL needed'
            """,
            """
            CREATE TABLE IF NOT EXISTS dead_letters (
                failed_at DateTime64(3, 'UTC'),
                agency LowCardinality(String),
                reason LowCardinality(String),
                error String,
                source_topic LowCardinality(String),
                source_partition Int32,
                source_offset Int64,
                key_bytes Nullable(UInt32),
                value_bytes Nullable(UInt32),
                deadletter_topic LowCardinality(String),
                deadletter_partition Int32,
                deadletter_offset Int64,
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(ingested_at)
            PARTITION BY toYYYYMM(failed_at)
            ORDER BY (
                agency, reason, source_topic, source_partition, source_offset,
                deadletter_topic, deadletter_partition, deadletter_offset
            )
            COMMENT 'Rejected messages: why, where from, how large; never their bytes'
            """,
            """
            CREATE OR REPLACE VIEW dead_letters_current AS
            SELECT
                agency,
                reason,
                source_topic,
                source_partition,
                source_offset,
                argMin(failed_at, first) AS failed_at,
                argMin(error, first) AS error,
                argMin(key_bytes, first) AS key_bytes,
                argMin(value_bytes, first) AS value_bytes,
                argMin(deadletter_topic, first) AS deadletter_topic,
                argMin(deadletter_partition, first) AS deadletter_partition,
                argMin(deadletter_offset, first) AS deadletter_offset,
                uniqExact(first) AS rejections
            FROM (
                SELECT *, (failed_at, deadletter_topic, deadletter_partition, deadletter_offset)
                    AS first
                FROM dead_letters
            )
            GROUP BY agency, reason, source_topic, source_partition, source_offset
            COMMENT 'One row per rejected source message, no FINAL needed'
            """,
            """
            CREATE TABLE IF NOT EXISTS incident_daily_counts (
                day Date,
                agency LowCardinality(String),
                category LowCardinality(String),
                admin_unit_code String,
                admin_unit_name String,
                incidents AggregateFunction(uniqExact, String),
                events AggregateFunction(uniqExact, UUID)
            )
            ENGINE = AggregatingMergeTree
            PARTITION BY toYYYYMM(day)
            ORDER BY (day, agency, category, admin_unit_code, admin_unit_name)
            COMMENT 'Fed by incident_daily_counts_mv: read through daily_incident_counts'
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS incident_daily_counts_mv
            TO incident_daily_counts AS {INCIDENT_DAILY_COUNTS}
            """,
            f"INSERT INTO incident_daily_counts {INCIDENT_DAILY_COUNTS}",
            """
            CREATE OR REPLACE VIEW daily_incident_counts AS
            SELECT
                day,
                agency,
                category,
                admin_unit_code,
                admin_unit_name,
                uniqExactMerge(incidents) AS incidents,
                uniqExactMerge(events) AS events
            FROM incident_daily_counts
            GROUP BY day, agency, category, admin_unit_code, admin_unit_name
            COMMENT 'Per day of occurrence (UTC), agency, category and administrative unit:
 distinct incidents and incident events, exact whatever was delivered twice'
            """,
            """
            CREATE TABLE IF NOT EXISTS incident_cells_daily (
                day Date,
                cell_lat Int32,
                cell_lon Int32,
                agency LowCardinality(String),
                placement LowCardinality(String),
                category LowCardinality(String),
                incidents AggregateFunction(uniqExact, String)
            )
            ENGINE = AggregatingMergeTree
            PARTITION BY toYYYYMM(day)
            ORDER BY (day, cell_lat, cell_lon, agency, placement, category)
            COMMENT 'Fed by incident_cells_daily_mv: read through daily_cell_counts'
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS incident_cells_daily_mv
            TO incident_cells_daily AS {INCIDENT_CELLS_DAILY}
            """,
            f"INSERT INTO incident_cells_daily {INCIDENT_CELLS_DAILY}",
            f"""
            CREATE OR REPLACE VIEW daily_cell_counts AS
            SELECT
                day,
                cell_lat,
                cell_lon,
                {CELL_CENTRE},
                agency,
                placement,
                category,
                uniqExactMerge(incidents) AS incidents
            FROM incident_cells_daily
            GROUP BY day, cell_lat, cell_lon, agency, placement, category
            COMMENT 'Per day (UTC) and 0.01 degree cell: distinct incidents by agency,
 placement and category'
            """,
            f"""
            CREATE OR REPLACE VIEW border_hotspots AS
            SELECT
                toDate(i.occurred_at) AS day,
                toInt32(floor(i.lat * {CELLS_PER_DEGREE})) AS cell_lat,
                toInt32(floor(i.lon * {CELLS_PER_DEGREE})) AS cell_lon,
                {CELL_CENTRE},
                uniqExact(i.agency, i.incident_id) AS incidents,
                groupUniqArray(i.agency) AS agencies,
                groupUniqArray(i.category) AS categories
            FROM (
                SELECT DISTINCT identifier FROM alerts
                WHERE alert_kind = 'BORDER_ZONE_INCIDENT'
            ) AS a
            INNER JOIN (
                SELECT
                    agency,
                    incident_id,
                    occurred_at,
                    lat,
                    lon,
                    category,
                    lower(hex(SHA256(concat(
                        'alert\\x1fBORDER_ZONE_INCIDENT\\x1f', agency, '\\x1f', incident_id
                    )))) AS identifier
                FROM incidents_current
            ) AS i ON i.identifier = a.identifier
            GROUP BY day, cell_lat, cell_lon
            COMMENT 'Per day (UTC) and 0.01 degree cell: incidents the correlator placed in
 the border zone (those it raised a BORDER_ZONE_INCIDENT alert for)'
            """,
        ),
    ),
    Migration(
        11,
        "faster current views: the latest row by ORDER BY ... LIMIT 1 BY (argMax copies"
        " arrays), closures on their own view, border hot spots matched on the alert time",
        (
            f"""
            CREATE OR REPLACE VIEW incidents_current AS
            SELECT
                agency,
                incident_id,
                {", ".join(INCIDENT_VERSION_COLUMNS)},
                (agency, incident_id) IN (SELECT agency, incident_id FROM incident_closures)
                    AS closed
            FROM (
                SELECT *, {INCIDENT_VERSION} AS version
                FROM incidents
                ORDER BY agency, incident_id, version DESC
                LIMIT 1 BY agency, incident_id
            )
            COMMENT 'One row per incident: its latest event (no FINAL needed), closed or not'
            """,
            """
            CREATE OR REPLACE VIEW incident_closures_current AS
            SELECT
                agency,
                incident_id,
                closed_at,
                outcome,
                reason,
                event_id
            FROM incident_closures
            ORDER BY agency, incident_id, closed_at DESC, event_id DESC
            LIMIT 1 BY agency, incident_id
            COMMENT 'The latest closure of each closed incident, no FINAL needed'
            """,
            f"""
            CREATE OR REPLACE VIEW correlations_current AS
            SELECT correlation_id, {", ".join(CORRELATION_VERSION_COLUMNS)}
            FROM correlations
            ORDER BY correlation_id, created_at DESC, score DESC
            LIMIT 1 BY correlation_id
            COMMENT 'One row per correlation (its newest scoring), no FINAL needed'
            """,
            f"""
            CREATE OR REPLACE VIEW alerts_current AS
            SELECT identifier, {", ".join(ALERT_VERSION_COLUMNS)}
            FROM alerts
            ORDER BY identifier, sent DESC
            LIMIT 1 BY identifier
            COMMENT 'One row per alert (an alert sent to several agencies is one row)'
            """,
            f"""
            CREATE OR REPLACE VIEW case_conclusions_current AS
            SELECT case_id, conclusion_id, {", ".join(CONCLUSION_VERSION_COLUMNS)}
            FROM case_conclusions
            ORDER BY case_id, conclusion_id, agreed_at DESC
            LIMIT 1 BY case_id, conclusion_id
            COMMENT 'One row per agreed conclusion, no FINAL needed'
            """,
            f"""
            CREATE OR REPLACE VIEW border_hotspots AS
            SELECT
                toDate(occurred_at) AS day,
                toInt32(floor(lat * {CELLS_PER_DEGREE})) AS cell_lat,
                toInt32(floor(lon * {CELLS_PER_DEGREE})) AS cell_lon,
                {CELL_CENTRE},
                uniqExact(agency, incident_id) AS incidents,
                groupUniqArray(agency) AS agencies,
                groupUniqArray(category) AS categories
            FROM incidents_current
            WHERE (agency, incident_id) IN (
                SELECT agency, incident_id
                FROM incidents
                WHERE occurred_at IN (
                    SELECT sent FROM alerts WHERE alert_kind = 'BORDER_ZONE_INCIDENT'
                )
                AND lower(hex(SHA256(concat(
                    'alert\\x1fBORDER_ZONE_INCIDENT\\x1f', agency, '\\x1f', incident_id
                )))) IN (
                    SELECT identifier FROM alerts WHERE alert_kind = 'BORDER_ZONE_INCIDENT'
                )
            )
            GROUP BY day, cell_lat, cell_lon
            COMMENT 'Per day (UTC) and 0.01 degree cell: incidents the correlator placed in
 the border zone (those it raised a BORDER_ZONE_INCIDENT alert for)'
            """,
        ),
    ),
    Migration(
        12,
        "audit_log: who did what and when for every verdict, report and release, accepted"
        " or refused",
        (_audit_log_view("'', ''"),),
    ),
    Migration(
        13,
        "the officer who released: incident_releases officer columns, audit_log names them",
        (
            """
            ALTER TABLE incident_releases
                ADD COLUMN IF NOT EXISTS officer_token String,
                ADD COLUMN IF NOT EXISTS officer_key_id LowCardinality(String)
            """,
            _audit_log_view("any(officer_token), any(officer_key_id)"),
        ),
    ),
    # border_hotspots (14) reads only the incidents whose key hashes like that of one with an
    # event at the time of a border-zone alert (its `sent`), then keeps, by their latest
    # version, those that have such an event and an alert of their own: a hash collision
    # only adds candidates these exact tests drop. One row per incident, so count() is the
    # distinct count. Same answers as 11's; over 1M incidents a fifth less CPU.
    Migration(
        14,
        "faster released details and border hot spots over 1M incidents: the released"
        " events picked by event_id instead of incidents FINAL in full; the hot spots'"
        " incidents narrowed by a key hash before their latest version is taken",
        (
            """
            CREATE OR REPLACE VIEW released_incidents AS
            SELECT
                r.case_id AS case_id,
                viewer,
                r.agency AS owner,
                r.incident_id AS incident_id,
                r.incident_event_id AS incident_event_id,
                r.released_at AS released_at,
                if(r.has_details, 'release', 'incident event') AS details_from,
                if(r.has_details, r.details_category, i.category) AS category,
                if(r.has_details, r.details_severity, i.severity) AS severity,
                if(r.has_details, r.details_occurred_at, i.occurred_at) AS occurred_at,
                if(r.has_details, r.details_admin_unit_name, i.admin_unit_name)
                    AS admin_unit_name,
                if(r.has_details, r.details_address, i.address) AS address,
                if(r.has_details, r.details_modus_operandi, i.modus_operandi) AS modus_operandi,
                if(r.has_details, r.details_narrative, i.narrative) AS narrative,
                r.details_subject_kinds AS subject_kinds,
                r.details_subject_tokens AS subject_tokens,
                r.details_subject_descriptors AS subject_descriptors
            FROM incident_releases AS r FINAL
            ARRAY JOIN r.audience AS viewer
            LEFT JOIN (
                SELECT event_id, category, severity, occurred_at, admin_unit_name, address,
                       modus_operandi, narrative
                FROM incidents
                WHERE event_id IN (SELECT incident_event_id FROM incident_releases)
                ORDER BY agency, incident_id, event_id, ingested_at DESC
                LIMIT 1 BY agency, incident_id, event_id
            ) AS i ON i.event_id = r.incident_event_id
            WHERE viewer != r.agency
            COMMENT 'Details of incidents their owner released, per agency allowed to see them:
 those attached to the release, else those of the named event'
            """,
            f"""
            CREATE OR REPLACE VIEW border_hotspots AS
            SELECT
                toDate(occurred_at) AS day,
                toInt32(floor(lat * {CELLS_PER_DEGREE})) AS cell_lat,
                toInt32(floor(lon * {CELLS_PER_DEGREE})) AS cell_lon,
                {CELL_CENTRE},
                count() AS incidents,
                arrayDistinct(groupArray(agency)) AS agencies,
                arrayDistinct(groupArray(category)) AS categories
            FROM (
                SELECT
                    agency,
                    latest.1 AS occurred_at,
                    latest.2 AS lat,
                    latest.3 AS lon,
                    latest.4 AS category
                FROM (
                    SELECT
                        agency,
                        incident_id,
                        argMax((occurred_at, lat, lon, category), version) AS latest,
                        max(at_alert_time) AS an_event_at_alert_time
                    FROM (
                        SELECT
                            agency,
                            incident_id,
                            occurred_at,
                            lat,
                            lon,
                            category,
                            {INCIDENT_VERSION} AS version,
                            occurred_at IN (
                                SELECT sent FROM alerts WHERE alert_kind = 'BORDER_ZONE_INCIDENT'
                            ) AS at_alert_time
                        FROM incidents
                        WHERE cityHash64(agency, incident_id) IN (
                            SELECT cityHash64(agency, incident_id)
                            FROM incidents
                            WHERE occurred_at IN (
                                SELECT sent FROM alerts WHERE alert_kind = 'BORDER_ZONE_INCIDENT'
                            )
                        )
                    )
                    GROUP BY agency, incident_id
                    HAVING an_event_at_alert_time
                        AND lower(hex(SHA256(concat(
                            'alert\\x1fBORDER_ZONE_INCIDENT\\x1f', agency, '\\x1f', incident_id
                        )))) IN (
                            SELECT identifier FROM alerts
                            WHERE alert_kind = 'BORDER_ZONE_INCIDENT'
                        )
                )
            )
            GROUP BY day, cell_lat, cell_lon
            COMMENT 'Per day (UTC) and 0.01 degree cell: incidents the correlator placed in
 the border zone (those it raised a BORDER_ZONE_INCIDENT alert for)'
            """,
        ),
    ),
)

PLACED_COLUMNS = {
    "placement": "LowCardinality(String)",
    "admin_unit_code": "String",
    "admin_unit_name": "String",
}
"""incidents columns whose DEFAULT ClickHouse computes from the configured polygons: the
sink sends NULL for them (``placement`` always, the unit when the event names none) and
ClickHouse fills in the default (``input_format_null_as_default``, ``insert_null_as_default``)."""


def apply_jurisdictions(client: Client, agencies: AgenciesConfig) -> bool:
    """Make the defaults of ``PLACED_COLUMNS`` follow ``agencies``' jurisdictions file:
    ``placement`` as :meth:`xborder.geo.Jurisdictions.placement` (empty without a
    jurisdictions file), the administrative unit as the unit polygon containing the point
    (empty where none does). A column comment holds a digest of the expressions, so an
    unchanged config alters nothing; returns whether the defaults changed. Rows already
    written keep what they have."""
    from xborder.geo import admin_unit_sql, placement_sql, read_jurisdictions

    areas = (
        []
        if agencies.jurisdictions is None
        else read_jurisdictions(agencies.jurisdictions, agencies.ids, agencies.region)
    )
    defaults = {
        "placement": placement_sql(areas) if areas else "''",
        "admin_unit_code": admin_unit_sql(areas, "code"),
        "admin_unit_name": admin_unit_sql(areas, "name"),
    }
    digest = hashlib.sha256(repr(sorted(defaults.items())).encode()).hexdigest()[:16]
    comments = {
        "placement": "own, other-jurisdiction:<agency> or outside (empty: no jurisdictions "
        f"configured when written); jurisdictions {digest}",
        "admin_unit_code": f"as sent, else from the unit polygons; jurisdictions {digest}",
        "admin_unit_name": f"as sent, else from the unit polygons; jurisdictions {digest}",
    }
    current = client.query(
        "SELECT name, comment FROM system.columns WHERE database = currentDatabase()"
        " AND table = 'incidents' AND name IN {names:Array(String)}",
        parameters={"names": list(PLACED_COLUMNS)},
    ).result_rows
    if {name: comment for name, comment in current} == comments:
        return False
    client.command(
        "ALTER TABLE incidents "
        + ", ".join(
            f"MODIFY COLUMN `{name}` {kind} DEFAULT {defaults[name]} COMMENT '{comments[name]}'"
            for name, kind in PLACED_COLUMNS.items()
        )
    )
    logger.info("incidents placement and administrative unit defaults follow %s", digest)
    return True


def _server_client(url: str, database: str) -> Client:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigurationError(  # the URL may carry the password: never print it
            f"ClickHouse URL {mask_url(url)!r} must look like "
            "http(s)://user:password@host:port/database"
        )
    db = parsed.path.strip("/") or database
    try:
        admin = clickhouse_connect.get_client(
            host=parsed.hostname,
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            username=parsed.username or "default",
            password=parsed.password or "",
            secure=parsed.scheme == "https",
        )
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        admin.close()
        return clickhouse_connect.get_client(
            host=parsed.hostname,
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            username=parsed.username or "default",
            password=parsed.password or "",
            secure=parsed.scheme == "https",
            database=db,
        )
    except ClickHouseError as exc:
        detail = str(exc)
        if parsed.password:
            detail = detail.replace(parsed.password, "**********")
        raise ServiceUnavailableError(
            f"ClickHouse server at {parsed.hostname}:{parsed.port} is not reachable: {detail}; "
            "check XBORDER_CLICKHOUSE__URL"
        ) from exc


def _embedded_client(settings: Settings) -> Client:
    directory = settings.clickhouse_dir
    directory.mkdir(parents=True, exist_ok=True)
    try:
        client = clickhouse_connect.get_client(dsn=f"chdb://{directory}")
        client.command(f"CREATE DATABASE IF NOT EXISTS `{settings.clickhouse.database}`")
        client.command(f"USE `{settings.clickhouse.database}`")
    except Exception as exc:
        raise ServiceUnavailableError(
            f"cannot open the embedded ClickHouse data directory {directory}: {exc}. "
            "chDB allows one process per directory: stop the sink (or the other process) "
            "that holds it, or set XBORDER_CLICKHOUSE__URL to use a server"
        ) from exc
    return client


def get_client(settings: Settings) -> Client:
    """A ClickHouse client for the configured target, database selected, tables migrated."""
    url = settings.clickhouse.url
    client = (
        _server_client(url, settings.clickhouse.database) if url else _embedded_client(settings)
    )
    migrate(client)
    apply_jurisdictions(client, load_agencies(settings.agencies_config))
    return client


def migrate(client: Client) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.description]],
            column_names=["version", "description"],
            column_type_names=["UInt32", "String"],
        )
        applied.append(migration.version)
        logger.info("applied ClickHouse migration %s: %s", migration.version, migration.description)
    return applied


def query_rows(
    client: Client, sql: str, parameters: dict[str, Any] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a read query; returns column names and rows."""
    result = client.query(sql, parameters=parameters)
    return list(result.column_names), [tuple(r) for r in result.result_rows]
