"""Topic names, all built from settings and the agencies config."""

from __future__ import annotations

from dataclasses import dataclass

from xborder.agencies import AgenciesConfig
from xborder.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Every topic the project reads or writes."""

    prefix: str
    agency_ids: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings, agencies: AgenciesConfig) -> Topics:
        return cls(prefix=settings.topics.prefix, agency_ids=tuple(agencies.ids))

    def incidents(self, agency_id: str) -> str:
        """Where agency ``agency_id`` publishes its incident events (only it writes there)."""
        return f"{self.prefix}incidents.{agency_id}"

    @property
    def all_incidents(self) -> list[str]:
        return [self.incidents(a) for a in self.agency_ids]

    @property
    def accepted(self) -> str:
        """Validated incident events of every agency, as the worker forwards them."""
        return f"{self.prefix}incidents.accepted"

    @property
    def dead_letters(self) -> str:
        """Messages the worker could not accept, with the reason in headers."""
        return f"{self.prefix}deadletters"

    def quarantine(self, agency_id: str) -> str:
        """Messages of agency ``agency_id`` refused for a raw identifier (reason
        ``raw-identifier``), with the original bytes: only that agency reads it, and it
        keeps them for ``XBORDER_TOPICS__QUARANTINE_RETENTION_HOURS``, never the shared
        ``deadletters``."""
        return f"{self.prefix}quarantine.{agency_id}"

    @property
    def all_quarantine(self) -> list[str]:
        return [self.quarantine(a) for a in self.agency_ids]

    def agency_of_input(self, topic: str) -> str | None:
        """The agency whose own input topic (``incidents.<agency>`` or ``verdicts.<agency>``)
        ``topic`` is; None for any other topic."""
        for agency in self.agency_ids:
            if topic in (self.incidents(agency), self.verdicts(agency)):
                return agency
        return None

    @property
    def blocks(self) -> str:
        """Internal: batches of (blocking key, incident view) items, repartitioned by key."""
        return f"{self.prefix}correlation.blocks"

    @property
    def links(self) -> str:
        """Internal, one partition: new correlations with both incidents, for the case stage."""
        return f"{self.prefix}correlation.links"

    @property
    def late(self) -> str:
        """Events the correlator refused as too late (their views, keyed by event id, the
        source topic in a header), for ``xborder status`` and ``xborder backfill``."""
        return f"{self.prefix}correlation.late"

    @property
    def correlations(self) -> str:
        """Cross-border links with their evidence (Avro Correlation)."""
        return f"{self.prefix}correlations"

    @property
    def cases(self) -> str:
        """Case events: created, incident added, merged (Avro CaseEvent)."""
        return f"{self.prefix}cases"

    def alerts(self, agency_id: str) -> str:
        """Alerts for agency ``agency_id``'s monitoring consumers (Avro Alert)."""
        return f"{self.prefix}alerts.{agency_id}"

    @property
    def all_alerts(self) -> list[str]:
        return [self.alerts(a) for a in self.agency_ids]

    def verdicts(self, agency_id: str) -> str:
        """Where agency ``agency_id`` writes its joint-verification inputs (Avro Verdict,
        CaseReport, IncidentRelease); only it writes there."""
        return f"{self.prefix}verdicts.{agency_id}"

    @property
    def all_verdicts(self) -> list[str]:
        return [self.verdicts(a) for a in self.agency_ids]

    def agency_of_verdicts(self, topic: str) -> str | None:
        """The agency whose verdict topic ``topic`` is; None for any other topic."""
        for agency in self.agency_ids:
            if topic == self.verdicts(agency):
                return agency
        return None

    @property
    def verification(self) -> str:
        """Joint verification as accepted by the case lifecycle: the verdicts, reports and
        releases it applied and the agreed conclusions (Avro Verdict, CaseReport,
        IncidentRelease with its audience, CaseConclusion), keyed by case id."""
        return f"{self.prefix}verification"

    @property
    def schemas(self) -> str:
        """Writer schemas producers publish (compacted, one partition): key the hex of the
        schema's CRC-64-AVRO fingerprint in wire order, value its self-contained JSON."""
        return f"{self.prefix}schemas"

    def sunk(self) -> list[str]:
        """What the ClickHouse sink consumes (of the dead letters, only headers and sizes
        are stored; the agencies' quarantine topics, which hold raw identifiers, are not
        read)."""
        return [
            self.accepted,
            self.correlations,
            self.cases,
            self.verification,
            *self.all_alerts,
            self.dead_letters,
        ]

    def created_by_project(self) -> list[str]:
        """Topics with the configured partition count (see :meth:`single_partition`)."""
        return [
            *self.all_incidents,
            self.accepted,
            self.dead_letters,
            self.blocks,
            self.late,
            self.correlations,
            self.cases,
            *self.all_alerts,
            *self.all_verdicts,
            self.verification,
        ]

    def single_partition(self) -> list[str]:
        """Topics that must have exactly one partition (a global order is needed)."""
        return [self.links]


def ensure_project_topics(settings: Settings, topics: Topics) -> list[str]:
    """Create every missing project topic with its partition count; returns those created.

    The agency topics keep the broker's append time as each message's timestamp
    (``LogAppendTime``): the worker checks "not in the future" against it, which a client
    could move if the topic kept the producer's ``CreateTime``."""
    from xborder.kafka_admin import ensure_topics

    created = ensure_topics(settings, topics.all_incidents, configs=INCIDENT_TOPIC_CONFIGS)
    created += ensure_topics(settings, [topics.blocks], configs=blocks_topic_configs(settings))
    created += ensure_topics(settings, topics.created_by_project())
    created += ensure_topics(settings, [topics.schemas], partitions=1, configs=SCHEMA_TOPIC_CONFIGS)
    retention_ms = int(settings.topics.quarantine_retention_hours * 3_600_000)
    created += ensure_topics(
        settings, topics.all_quarantine, configs={"retention.ms": str(retention_ms)}
    )
    return created + ensure_topics(settings, topics.single_partition(), partitions=1)


def blocks_topic_configs(settings: Settings) -> dict[str, str]:
    """Topic configs of ``correlation.blocks``: the correlation stage rebuilds its state
    from it (:mod:`streams.flows.replay`), so it keeps messages for at least twice the
    window plus the allowed lateness."""
    hour_ms = 3_600_000
    correlation = settings.correlation
    retention = max(
        7 * 24 * hour_ms,
        int(2 * (correlation.window_hours + correlation.allowed_lateness_hours) * hour_ms),
    )
    return {"retention.ms": str(retention)}


INCIDENT_TOPIC_CONFIGS = {"message.timestamp.type": "LogAppendTime"}
"""Topic configs of ``incidents.<agency>`` (see :func:`ensure_project_topics`)."""
SCHEMA_TOPIC_CONFIGS = {"cleanup.policy": "compact"}
"""Topic configs of ``schemas``: one record per fingerprint is kept for ever."""
