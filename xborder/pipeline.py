"""The pipeline's processes on one machine: Faust workers and the ClickHouse sink.

Each runs as a child process (``python -m xborder worker|sink``) configured through
the same settings, passed as ``XBORDER_*`` variables; logs go to ``<data_dir>/logs``.
Used by the demo, the benchmark and the integration tests.

With ``supervise``, a child that exits on its own (a crash, a kill, the liveness
watchdog's status 70) is started again by the next :meth:`Pipeline.check_alive`, which
every wait calls, up to ``max_restarts`` times each; without it, such an exit is an
error. The sink runs as a static group member (``<group_id>-sink``), so a restarted sink
gets its partitions back without waiting for a rebalance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from xborder.errors import ServiceUnavailableError
from xborder.kafka_admin import wait_for_group
from xborder.kafka_security import kafka_python
from xborder.settings import Settings, to_env
from xborder.topics import Topics

logger = logging.getLogger(__name__)


class Pipeline:
    """``workers`` Faust workers and (optionally) the sink as child processes."""

    def __init__(
        self,
        settings: Settings,
        workers: int = 1,
        sink: bool = True,
        supervise: bool = False,
        max_restarts: int = 5,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.with_sink = sink
        self.supervise = supervise
        self.max_restarts = max_restarts
        self.log_dir = settings.data_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[str, Settings]] = {}
        """How each child was started: its command and settings, for a restart."""
        self.restarts: dict[str, list[int]] = {}
        """Exit status of each child the supervisor restarted, by name."""

    def _spawn(self, name: str, command: str, settings: Settings) -> None:
        self.commands[name] = (command, settings)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **to_env(settings)}
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "xborder", command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start(self) -> None:
        for index in range(self.workers):
            self.start_worker(index)
        if self.with_sink:
            self.start_sink()

    def start_sink(self) -> None:
        """Start the sink as a static group member; also a restart."""
        settings = self.settings
        if settings.sink.group_instance_id is None:
            settings = settings.with_overrides(
                **{"sink.group_instance_id": f"{settings.sink.group_id}-sink"}
            )
        self._spawn("sink", "sink", settings)

    def start_worker(self, index: int) -> None:
        """Start worker ``index`` (its own state directory and web port); also a restart."""
        worker_settings = self.settings.with_overrides(
            **{
                "data_dir": self.settings.data_dir / f"worker-{index}",
                "worker.web_port": self.settings.worker.web_port + index,
            }
        )
        self._spawn(f"worker-{index}", "worker", worker_settings)

    def pids(self) -> dict[str, int]:
        """Process id of each running child, by name."""
        return {name: p.pid for name, p in self.processes.items() if p.poll() is None}

    def check_alive(self) -> None:
        """Raise if a child exited; with ``supervise``, restart it instead (bounded)."""
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            restarted = self.restarts.setdefault(name, [])
            if self.supervise and len(restarted) < self.max_restarts:
                restarted.append(process.returncode)
                logger.warning(
                    "the %s exited with code %s; restarting it (restart %s of at most %s)",
                    name,
                    process.returncode,
                    len(restarted),
                    self.max_restarts,
                )
                command, settings = self.commands[name]
                self._spawn(name, command, settings)
                continue
            raise ServiceUnavailableError(
                f"the {name} exited with code {process.returncode}; see "
                f"{self.log_dir / (name + '.log')}"
            )

    def wait_until_drained(self, topics: Topics, timeout_s: float = 120.0) -> None:
        """Wait until every stage has committed everything published so far.

        In order: the worker's ingest, its correlation stage, the forwarding of agencies'
        verification inputs, the case stage (whose input the previous stages wrote before
        committing), then the sink: ``xborder wait`` (:mod:`xborder.wait`), which takes the
        topics from the settings (``topics`` is the same set), while checking that every
        child is alive.
        """
        from xborder.wait import NotProcessedError, wait_until_processed

        try:
            wait_until_processed(
                self.settings,
                timeout_s,
                sink=self.with_sink,
                progress=lambda _stage, _lag: self.check_alive(),
            )
        except NotProcessedError as exc:
            raise ServiceUnavailableError(f"{exc}\n{self.log_tails()}") from exc

    def wait_for_worker(self, topics: Topics, timeout_s: float = 120.0) -> None:
        """Wait until the worker has committed every published incident event."""
        deadline = time.monotonic() + timeout_s
        self._wait_for(self.settings.worker.ingest_group_id, topics.all_incidents, deadline)

    def _wait_for(self, group: str, names: list[str], deadline: float) -> None:
        while True:
            self.check_alive()
            try:
                wait_for_group(
                    self.settings.kafka.bootstrap_servers,
                    group,
                    names,
                    timeout_s=2.0,
                    security=kafka_python(self.settings),
                )
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

    def wait_until_settled(self, timeout_s: float = 90.0, quiet_s: float = 3.0) -> None:
        """Wait until every worker is ready and no rebalance happened for ``quiet_s``.

        Load published while workers are still joining triggers rebalances mid-stream;
        faust-streaming can leave a consumer idle after one (upstream issues #175, #532),
        so benchmarks and tests start their load only on a settled group.
        """
        from streams.flows.ingest import ASSIGNED_LOG

        deadline = time.monotonic() + timeout_s
        names = [f"worker-{i}" for i in range(self.workers)]
        last_change, last_seen = time.monotonic(), -1
        while time.monotonic() < deadline:
            self.check_alive()
            texts = [self._log_text(name) for name in names]
            ready = all(
                "[^Worker]: Ready" in text
                and (ASSIGNED_LOG in text or not self.settings.worker.ingest)
                for text in texts
            )
            assignments = sum(
                text.count("Executing _on_partitions_assigned") + text.count(ASSIGNED_LOG)
                for text in texts
            )
            if assignments != last_seen:
                last_change, last_seen = time.monotonic(), assignments
            if ready and time.monotonic() - last_change >= quiet_s:
                return
            time.sleep(0.3)
        raise ServiceUnavailableError(
            f"the workers did not settle within {timeout_s:.0f} s\n{self.log_tails()}"
        )

    def _log_text(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Pipeline]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
