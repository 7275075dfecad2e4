"""What the benchmark samples while it runs: process memory, the machine it ran on."""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from xborder.settings import Settings


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (from /proc), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time ``pid`` has used so far, in seconds, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: count fields after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds that named processes spend between :meth:`start` and :meth:`stop`.

    CPU time per unit of work is the figure that holds on a shared, noisy machine where
    wall-clock rates do not."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _started_at: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall-clock seconds from :meth:`start` to :meth:`stop`."""

    def start(self) -> None:
        self._start = {n: c for n, p in self.pids.items() if (c := cpu_seconds(p)) is not None}
        self._started_at = time.monotonic()

    def stop(self) -> dict[str, float]:
        """CPU seconds per process since :meth:`start` (also kept in :attr:`used`)."""
        self.seconds = time.monotonic() - self._started_at
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            if now is not None and name in self._start:
                self.used[name] = now - self._start[name]
        return self.used

    def cores(self) -> dict[str, float]:
        """Cores each process used between :meth:`start` and :meth:`stop`."""
        if self.seconds <= 0:
            return {}
        return {name: round(s / self.seconds, 4) for name, s in sorted(self.used.items())}

    def per_thousand(self, events: int) -> dict[str, float]:
        """CPU seconds per 1,000 events for each process and ``total``."""
        if not events:
            return {}
        out = {name: round(s * 1000 / events, 4) for name, s in sorted(self.used.items())}
        out["total"] = round(sum(self.used.values()) * 1000 / events, 4)
        return out


def require_broker(settings: Settings) -> int | None:
    """Raise ServiceUnavailableError unless a broker answers; the local broker's process id
    (to meter its CPU), taken before a run moves ``data_dir`` to its own directory."""
    from xborder.errors import ServiceUnavailableError
    from xborder.kafka_admin import broker_accepts_requests
    from xborder.kafka_security import kafka_python

    if not broker_accepts_requests(
        settings.kafka.bootstrap_servers, security=kafka_python(settings)
    ):
        raise ServiceUnavailableError(
            f"no Kafka broker answers at {settings.kafka.bootstrap_servers}; start one with "
            "'xborder kafka up' (or set XBORDER_KAFKA__BOOTSTRAP_SERVERS)"
        )
    return broker_pid(settings)


def broker_pid(settings: Settings) -> int | None:
    """Process id of the local broker of ``settings`` (``xborder kafka up``), if it runs."""
    from xborder.local_kafka import LocalKafka

    return LocalKafka(settings.local_kafka, settings.kafka_data_dir).status().pid


def machine() -> dict[str, object]:
    """Cores, memory, processor and software of this machine, and how fast it runs Python
    (:func:`machine_speed`), so two runs can be compared."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "speed": machine_speed(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def machine_speed(repeats: int = 5) -> dict[str, float]:
    """How fast this machine runs the worker's kind of code, best of ``repeats`` rounds
    (about half a second in all): nanoseconds per iteration of a plain Python loop, and
    microseconds per fastavro decode of a sample IncidentReported body (the worker's first
    step). CPU seconds per 1,000 events depend on the machine as much as on the code: the
    same commit's ``bench stages`` worker cost 0.18 CPU s per 1,000 events on one 2-core
    machine and 0.37 on the next day's of the same kind, so compare runs by their ratio
    in one session, and across sessions next to these figures."""
    from xborder.codec import AvroCodec
    from xborder.codec_bench import bare_decode_rate, sample_bodies
    from xborder.errors import ConfigurationError
    from xborder.schemas import SchemaStore
    from xborder.settings import REPO_ROOT

    loop_ns = min(_loop_seconds(200_000) for _ in range(repeats)) / 200_000 * 1e9
    figures: dict[str, float] = {"python_loop_ns": round(loop_ns, 1)}
    try:
        codec = AvroCodec(SchemaStore(REPO_ROOT / "schemas"))
    except ConfigurationError:  # an installed package without the schema files: the loop
        return figures
    schema, _, bodies = sample_bodies(codec, 1_000)
    figures["avro_decode_us"] = round(1e6 / bare_decode_rate(schema, bodies, repeats), 2)
    return figures


def _loop_seconds(n: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - started


@dataclass
class MemorySampler:
    """Samples the RSS of named processes every ``interval_s`` on a background thread."""

    pids: dict[str, int]
    interval_s: float = 0.5
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic() - self._t0
            for name, pid in self.pids.items():
                value = rss_mb(pid)
                if value is not None:
                    self.samples.setdefault(name, []).append((now, value))
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self) -> dict[str, dict[str, float]]:
        """Peak RSS and growth per process: last third's mean over the middle third's, and
        the last sample over the one at 30% of the run."""
        out: dict[str, dict[str, float]] = {}
        for name, points in self.samples.items():
            values = [v for _, v in points]
            if not values:
                continue
            third = max(1, len(values) // 3)
            middle = values[third : 2 * third] or values
            last = values[2 * third :] or values
            out[name] = {
                "peak_mb": round(max(values), 1),
                "first_mb": round(values[0], 1),
                "last_mb": round(values[-1], 1),
                "growth_last_vs_middle": round(
                    (sum(last) / len(last)) / (sum(middle) / len(middle)), 3
                ),
                "at_30pct_mb": round(values[int(len(values) * 0.3)], 1),
                "growth_30pct_to_end": round(values[-1] / values[int(len(values) * 0.3)], 3),
            }
        return out
