"""The live demo: local Kafka up, worker and sink running, sample events through, a query.

Also the building block of the end-to-end test: :class:`Pipeline` starts the worker and
the sink as child processes configured with the same settings, and waits until both
have committed everything published.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, TextIO

from xborder.agencies import load_agencies
from xborder.clickhouse import get_client, query_rows
from xborder.codec import AvroCodec
from xborder.errors import ServiceUnavailableError
from xborder.kafka_admin import wait_for_group
from xborder.local_kafka import LocalKafka
from xborder.producer import IncidentPublisher
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics

DEMO_QUERY = """
SELECT agency, incident_id, category, severity,
       formatDateTime(occurred_at, '%Y-%m-%d %H:%i', 'UTC') AS occurred_utc,
       admin_unit_name, round(lat, 3) AS lat, round(lon, 3) AS lon,
       length(subject_tokens) AS subjects, source_topic
FROM incidents FINAL
WHERE event_id IN {ids:Array(UUID)}
ORDER BY occurred_at
"""


class Pipeline:
    """Worker and sink as child processes sharing ``settings``; logs under the data dir."""

    def __init__(
        self, settings: Settings, components: tuple[str, ...] = ("worker", "sink")
    ) -> None:
        self.settings = settings
        self.components = components
        self.log_dir = settings.data_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **to_env(self.settings)}
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "xborder", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start(self) -> None:
        for name in self.components:
            self._spawn(name)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise ServiceUnavailableError(
                    f"the {name} exited with code {process.returncode}; see "
                    f"{self.log_dir / (name + '.log')}"
                )

    def wait_until_drained(self, topics: Topics, timeout_s: float = 120.0) -> None:
        """Wait until the worker and then the sink have committed everything published."""
        deadline = time.monotonic() + timeout_s
        self.wait_for_worker(topics, timeout_s)
        if "sink" in self.components:
            self._wait_for(self.settings.sink.group_id, [topics.accepted], deadline)

    def wait_for_worker(self, topics: Topics, timeout_s: float = 120.0) -> None:
        """Wait until the worker has committed every published incident event."""
        deadline = time.monotonic() + timeout_s
        self._wait_for(self.settings.worker.app_id, topics.all_incidents, deadline)

    def _wait_for(self, group: str, names: list[str], deadline: float) -> None:
        while True:
            self.check_alive()
            try:
                wait_for_group(self.settings.kafka.bootstrap_servers, group, names, timeout_s=2.0)
                return
            except ServiceUnavailableError as exc:
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(f"{exc}\n{self.log_tails()}") from exc

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of each child's log, for error messages."""
        parts = []
        for name in self.processes:
            path = self.log_dir / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- last lines of {path}:\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM each process (the sink flushes first), then wait; kill stragglers."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[Pipeline]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def publish_samples(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish each event through its own agency's publisher."""
    agencies = load_agencies(settings.agencies_config)
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    by_agency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_agency[event["agency"]].append(event)
    for agency_id, batch in by_agency.items():
        with IncidentPublisher(settings, agencies, codec, agency_id) as publisher:
            publisher.publish_batch(batch)


def _step(out: TextIO, started: float, text: str) -> None:
    out.write(f"[{time.monotonic() - started:6.1f} s] {text}\n")
    out.flush()


def run_demo(
    settings: Settings, events: int = 6, keep_running: bool = False, out: TextIO = sys.stdout
) -> int:
    """The main job of the README's first command."""
    started = time.monotonic()
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    _step(
        out,
        started,
        f"fetching Apache Kafka {settings.local_kafka.version} (cached after the first run)",
    )
    kafka.fetch()
    _step(out, started, f"starting Kafka on {kafka.bootstrap} (data in {kafka.data_dir})")
    was_running = kafka.status().running
    kafka.up()
    try:
        topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        ensure_project_topics(settings, topics)
        pipeline = Pipeline(settings)
        _step(out, started, "starting the Faust worker and the ClickHouse sink")
        with pipeline.running():
            batch = sample_events(events)
            _step(out, started, f"publishing {len(batch)} sample incident events")
            publish_samples(settings, batch)
            _step(out, started, "waiting for the worker and the sink to commit them")
            pipeline.wait_until_drained(topics)
            _step(out, started, "stopping worker and sink (the sink owns embedded ClickHouse)")
        client = get_client(settings)
        try:
            columns, rows = query_rows(client, DEMO_QUERY, {"ids": [e["event_id"] for e in batch]})
            _, totals = query_rows(
                client,
                "SELECT agency, category, count() FROM incidents FINAL "
                "GROUP BY agency, category ORDER BY agency, category",
            )
        finally:
            client.close()
        _step(out, started, f"analyst query returned {len(rows)} of {len(batch)} events:")
        from xborder.cli import print_table

        out.write("\n" + DEMO_QUERY.strip() + "\n\n")
        print_table(columns, rows, out)
        out.write("\nAll incidents stored so far, by agency and category:\n")
        print_table(["agency", "category", "incidents"], totals, out)
        out.write("\n")
        return 0 if len(rows) == len(batch) else 1
    finally:
        if not keep_running and not was_running:
            _step(out, started, "stopping Kafka")
            kafka.down()
        _step(out, started, "done")
