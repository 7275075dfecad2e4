"""Process-local counters, declared once here; labels are topics and outcomes, never ids."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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
