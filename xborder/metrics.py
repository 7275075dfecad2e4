"""Process-local counters, declared once here; labels are topics and outcomes, never ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

LATE_SOURCE_HEADER = "xborder-late-source"
"""Header of a message on the late topic (``correlation.late``): the too-late event's
source topic, ``incidents.<agency>``."""


@dataclass
class IngestMetrics:
    """Counters of the worker's ingest flow."""

    accepted: Counter[str] = field(default_factory=Counter)
    """Accepted messages per source topic."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Rejected messages per reason (undecodable, unknown-schema, invalid, oversized)."""
    batches: int = 0
    """Ingest batches processed and committed."""
    phase_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent per phase of the batch cycle (collect, process, flush, commit)."""
    events: int = 0
    """Messages taken in batches (accepted and rejected)."""

    def add_phase(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to the batch cycle's phase ``name``."""
        self.phase_s[name] = self.phase_s.get(name, 0.0) + seconds


@dataclass
class StageMetrics:
    """Where a worker stage's batch cycle spends its time, for its periodic log line."""

    name: str
    """The stage, as the log line names it (only ``correlation`` reports so far)."""
    batches: int = 0
    messages: int = 0
    phase_s: dict[str, float] = field(default_factory=dict)
    """Seconds per phase over the batches counted (wait, apply, send, record)."""
    age_s: float = 0.0
    """Sum over the batches of the age of the batch's oldest message when it was taken."""
    age_max_s: float = 0.0

    def add_batch(self, messages: int, oldest_age_s: float, phases: Mapping[str, float]) -> None:
        """Count one batch of ``messages`` whose oldest message was ``oldest_age_s`` old
        (by its Kafka timestamp) when taken, and the seconds of each phase of its cycle."""
        self.batches += 1
        self.messages += messages
        self.age_s += oldest_age_s
        self.age_max_s = max(self.age_max_s, oldest_age_s)
        for phase, seconds in phases.items():
            self.phase_s[phase] = self.phase_s.get(phase, 0.0) + seconds

    def line(self, interval_s: float) -> str | None:
        """The log line on the batches since the last one (None without any), then reset."""
        if not self.batches:
            return None
        per_batch = ", ".join(
            f"{phase} {seconds * 1000 / self.batches:.0f}"
            for phase, seconds in self.phase_s.items()
        )
        text = (
            f"{self.name} stage: {self.messages} messages in {self.batches} batches over "
            f"{interval_s:.0f} s; ms per batch: {per_batch}; oldest message when taken "
            f"{self.age_s * 1000 / self.batches:.0f} ms on average, {self.age_max_s * 1000:.0f} max"
        )
        self.batches = self.messages = 0
        self.phase_s = {}
        self.age_s = self.age_max_s = 0.0
        return text


@dataclass
class SinkMetrics:
    """Counters of the ClickHouse sink."""

    rows_written: Counter[str] = field(default_factory=Counter)
    """Rows inserted per table."""
    flushes: Counter[str] = field(default_factory=Counter)
    """Flush attempts per outcome (ok, transient, terminal)."""


@dataclass
class LateMetrics:
    """Events the correlator could not correlate because they arrived too late (older than
    its watermark minus the window), per source topic (``incidents.<agency>``)."""

    too_late: Counter[str] = field(default_factory=Counter)
    """Too-late events per source topic since the worker started."""
    unreported: Counter[str] = field(default_factory=Counter)
    """Too-late events per source topic not yet in a log line."""
    reported_at: float | None = None
    """When (monotonic seconds) the last log line was written."""

    def add(self, source: str, count: int = 1) -> None:
        """Count ``count`` too-late events of ``source``."""
        self.too_late[source] += count
        self.unreported[source] += count

    def due(self, now: float, interval_s: float) -> Counter[str] | None:
        """The counts to log now, or None: at most one line per ``interval_s``, the first
        as soon as there is something to say. Taking them starts a new interval."""
        if not self.unreported:
            return None
        if self.reported_at is not None and now - self.reported_at < interval_s:
            return None
        taken, self.unreported = self.unreported, Counter()
        self.reported_at = now
        return taken
