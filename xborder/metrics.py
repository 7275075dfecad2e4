"""Process-local counters, declared once here; labels are topics and outcomes, never ids."""

from __future__ import annotations

from collections import Counter
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
