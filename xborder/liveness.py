"""A liveness watchdog for a consumer: partitions with lag whose committed offsets stand
still for too long mean the consumer is stuck, and the process exits for its supervisor
to restart it.

Kafka clients can stop consuming without failing: faust-streaming's consumer after a
rebalance or a broker outage (upstream issues #175, #523, #532: lag grows, the offset
never advances, nothing is logged), kafka-python's poll spinning in
``ensure_coordinator_ready``. A process in that state looks alive to its supervisor, so
the watchdog looks from outside the consumer: a thread of its own asks the broker for the
group's committed offsets and the partitions' end offsets every ``check_s``. A partition
this process owns that has lag, and whose committed offset has not moved for
``stall_s``, is stalled; the watchdog then logs one line naming the partitions and exits
the process with :data:`EXIT_STALLED` (``os._exit``: a stuck process may not stop
cleanly). The next run re-reads what was not committed (at-least-once, idempotent rows).

The process says what it owns and whether it is knowingly waiting (ClickHouse away, a
rebalance, table recovery): a wait it logs is not a stall, and restarting would not end
it. A broker the watchdog cannot reach is no stall either: no consumer could progress.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.errors import KafkaError

logger = logging.getLogger(__name__)

EXIT_STALLED = 70
"""Exit status of a process the watchdog stopped (EX_SOFTWARE): restart it."""

Partition = tuple[str, int]


@dataclass(frozen=True)
class Ownership:
    """What the watched consumer owns now, and why it is waiting if it knows it is."""

    partitions: frozenset[Partition]
    waiting: str | None = None


@dataclass
class StallClock:
    """Per partition, since when it has had lag with the same committed offset."""

    stall_s: float
    _since: dict[Partition, float] = field(default_factory=dict)
    _committed: dict[Partition, int | None] = field(default_factory=dict)

    def observe(
        self,
        now: float,
        owned: Ownership,
        committed: dict[Partition, int | None],
        ends: dict[Partition, int],
    ) -> dict[Partition, float]:
        """Record one look; returns the stalled partitions with seconds stalled."""
        if owned.waiting is not None:
            self._since.clear()
            return {}
        stalled: dict[Partition, float] = {}
        for tp in list(self._since):
            if tp not in owned.partitions:
                del self._since[tp]
        for tp in owned.partitions:
            position = committed.get(tp)
            lag = ends.get(tp, 0) - (position or 0)
            if lag <= 0:
                self._since.pop(tp, None)
            elif tp not in self._since or self._committed.get(tp) != position:
                self._since[tp] = now
            elif now - self._since[tp] >= self.stall_s:
                stalled[tp] = now - self._since[tp]
            self._committed[tp] = position
        return stalled


class Watchdog:
    """Watches ``group_id``'s commits on the partitions ``owned()`` reports, in a thread."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        name: str,
        stall_s: float,
        owned: Callable[[], Ownership],
        check_s: float | None = None,
        on_stall: Callable[[str], None] | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security  # kafka-python options (xborder.kafka_security)
        self.group_id = group_id
        self.name = name
        self.clock = StallClock(stall_s)
        self.owned = owned
        self.check_s = check_s if check_s is not None else max(1.0, min(10.0, stall_s / 6))
        self.on_stall = on_stall or _exit_stalled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-watchdog", daemon=True)
        self._admin: KafkaAdminClient | None = None
        self._watching: frozenset[Partition] = frozenset()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.check_s + 15)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.check_s):
                self.check()
        finally:
            self._close()

    def check(self) -> dict[Partition, float]:
        """One look at the broker; calls ``on_stall`` when a partition is stalled."""
        owned = self.owned()
        if owned.partitions != self._watching:
            self._watching = owned.partitions
            logger.info(
                "%s watchdog: %s partitions of group %s owned; stuck after %.0f s without a "
                "commit while they have lag",
                self.name,
                len(owned.partitions),
                self.group_id,
                self.clock.stall_s,
            )
        if not owned.partitions:
            self.clock.observe(time.monotonic(), owned, {}, {})
            return {}
        try:
            committed, ends = self._offsets_of(owned.partitions)
        except (KafkaError, OSError, ValueError) as exc:
            logger.debug("%s watchdog cannot read offsets (%s); not judging", self.name, exc)
            self.clock.observe(time.monotonic(), Ownership(owned.partitions, "broker"), {}, {})
            self._close()
            return {}
        stalled = self.clock.observe(time.monotonic(), owned, committed, ends)
        if stalled:
            names = ", ".join(
                f"{t}[{p}] (lag {ends[(t, p)] - (committed.get((t, p)) or 0)}, "
                f"committed {committed.get((t, p))})"
                for t, p in sorted(stalled)
            )
            self.on_stall(
                f"{self.name} is stuck: group {self.group_id} has not committed on {names} "
                f"for {max(stalled.values()):.0f} s (XBORDER_*__STALL_TIMEOUT_S) while they "
                f"have lag; exiting with status {EXIT_STALLED} so that its supervisor "
                "restarts it (the uncommitted messages are read again)"
            )
        return stalled

    def _offsets_of(
        self, partitions: Iterable[Partition]
    ) -> tuple[dict[Partition, int | None], dict[Partition, int]]:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                **(self.security or {}),
                client_id=f"xborder-{self.name}-watchdog",
                request_timeout_ms=5_000,
            )
        tps = [TopicPartition(t, p) for t, p in partitions]
        answer = self._admin.list_group_offsets({self.group_id: tps}).get(self.group_id, {})
        committed: dict[Partition, int | None] = {
            (tp.topic, tp.partition): (meta.offset if meta.offset >= 0 else None)
            for tp, meta in answer.items()
        }
        latest = self._admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST))
        ends = {(tp.topic, tp.partition): int(found.offset) for tp, found in latest.items()}
        return committed, ends

    def _close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:  # closing a client of a dead broker can fail; we drop it
                pass
        self._admin = None


def _exit_stalled(message: str) -> None:
    logger.error("%s", message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_STALLED)
