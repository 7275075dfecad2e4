"""A single-node Apache Kafka (KRaft, broker+controller) on the JVM, without Docker.

The jars come from Maven Central (``org.apache.kafka:kafka_2.13`` and its runtime
dependencies) through ``mvn dependency:copy-dependencies``, once, into a cache outside
the repository. Each data directory holds its own config, logs, pid file and KRaft
storage, so a second ``up`` after ``down`` keeps the data.

With a :class:`BrokerSecurity` (secure mode, docs/security.md) every listener speaks TLS:
clients SASL/SCRAM over TLS, the controller mutual TLS; KRaft's ``StandardAuthorizer``
denies what no ACL allows, and ``admin`` and ``broker`` are super users.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xborder.errors import LocalKafkaError
from xborder.kafka_admin import broker_accepts_requests
from xborder.settings import LocalKafkaSettings

logger = logging.getLogger(__name__)

POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.xborder</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <!-- Kafka logs through slf4j 1.7; this binding routes it to log4j2 (as the release does). -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""
LOG4J_VERSION = "2.25.5"

LOG4J_TEMPLATE = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = info
"""


@dataclass(frozen=True)
class BrokerSecurity:
    """What a secure broker needs: its TLS material, SCRAM users and the probe's options."""

    directory: Path
    """Holds ca.pem and the broker's key and certificate (``xborder kafka certs``)."""
    users: dict[str, str]
    """SCRAM users created when the storage is formatted (at least ``broker``)."""
    mechanism: str
    client_options: dict[str, Any]
    """kafka-python options of a super user, for the readiness probe."""


@dataclass(frozen=True)
class KafkaStatus:
    """What ``status`` reports."""

    running: bool
    pid: int | None
    accepts_requests: bool
    bootstrap: str
    data_dir: Path

    def describe(self) -> str:
        if not self.running:
            return f"stopped (data in {self.data_dir})"
        state = "ready" if self.accepts_requests else "starting or unhealthy"
        return f"running, pid {self.pid}, {state}, bootstrap {self.bootstrap}, data {self.data_dir}"


def _kafka_uuid() -> str:
    """A random Kafka cluster id (16 bytes, URL-safe base64 without padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _is_kafka_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline


class LocalKafka:
    """Fetch, start, stop and inspect the local broker described by ``settings``."""

    def __init__(
        self, settings: LocalKafkaSettings, data_dir: Path, security: BrokerSecurity | None = None
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.security = security
        self.version_dir = settings.cache_dir / settings.version
        self.libs_dir = self.version_dir / "libs"
        self.pid_file = data_dir / "kafka.pid"
        self.server_log = data_dir / "server.log"
        self.stdout_log = data_dir / "stdout.log"
        self.properties = data_dir / "server.properties"
        self.log_dirs = data_dir / "logs"

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- fetching -----------------------------------------------------------------

    def fetch(self) -> Path:
        """Download Kafka's jars with Maven once; later calls reuse the cache."""
        if (self.libs_dir / ".complete").exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                "Maven ('mvn') is not on PATH; install it (apt-get install maven) to fetch Kafka"
            )
        self.version_dir.mkdir(parents=True, exist_ok=True)
        with open(self.version_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
            if (self.libs_dir / ".complete").exists():
                return self.libs_dir
            logger.info("fetching Apache Kafka %s from Maven Central", self.settings.version)
            started = time.monotonic()
            with tempfile.TemporaryDirectory(dir=self.version_dir) as work:
                pom = Path(work) / "pom.xml"
                pom.write_text(
                    POM_TEMPLATE.format(version=self.settings.version, log4j_version=LOG4J_VERSION)
                )
                staging = Path(work) / "libs"
                result = subprocess.run(
                    [
                        mvn,
                        "-B",
                        "-q",
                        "-f",
                        str(pom),
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={staging}",
                        "-DincludeScope=runtime",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
                    output = (result.stdout + result.stderr).strip().splitlines()[-20:]
                    raise LocalKafkaError(
                        f"Maven could not fetch org.apache.kafka:kafka_2.13:{self.settings.version}"
                        f" (exit {result.returncode}):\n"
                        + "\n".join(output)
                        + "\ncheck the version (XBORDER_LOCAL_KAFKA__VERSION) and network access"
                    )
                if self.libs_dir.exists():
                    shutil.rmtree(self.libs_dir)
                staging.rename(self.libs_dir)
            (self.libs_dir / ".complete").touch()
            logger.info("fetched Kafka in %.1f s", time.monotonic() - started)
        return self.libs_dir

    # -- lifecycle ----------------------------------------------------------------

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise LocalKafkaError("Java 17+ is needed to run Kafka; install it or set JAVA_HOME")
        return java

    def _listener_config(self, controller: str) -> list[str]:
        if self.security is None:
            return [
                f"listeners=PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
                f"advertised.listeners=PLAINTEXT://{self.bootstrap}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        from xborder.kafka_security import broker_keystore

        sec = self.security
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{sec.users["broker"]}";'
        )
        scram = sec.mechanism.lower()
        return [
            f"listeners=CLIENT://{self.bootstrap},CONTROLLER://{controller}",
            f"advertised.listeners=CLIENT://{self.bootstrap}",
            "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name=CLIENT",
            f"sasl.enabled.mechanisms={sec.mechanism}",
            f"sasl.mechanism.inter.broker.protocol={sec.mechanism}",
            f"listener.name.client.{scram}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={broker_keystore(sec.directory)}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={sec.directory / 'ca.pem'}",
            # the controller listener takes only the broker's own certificate (CN=broker)
            "listener.name.controller.ssl.client.auth=required",
            "ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9._-]+),.*$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:admin;User:broker",
            "allow.everyone.if.no.acl.found=false",
        ]

    def _write_config(self) -> None:
        s = self.settings
        controller = f"{s.host}:{s.effective_controller_port}"
        self.properties.touch(mode=0o600)  # it may hold the broker's password
        self.properties.chmod(0o600)
        self.properties.write_text(
            "\n".join(
                [
                    "# written by 'xborder kafka up' from the settings; edits are overwritten",
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{controller}",
                    *self._listener_config(controller),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={self.log_dirs}",
                    f"num.partitions={s.partitions}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        (self.data_dir / "log4j2.properties").write_text(
            LOG4J_TEMPLATE.format(log_file=self.server_log)
        )

    def _classpath(self) -> str:
        return str(self.libs_dir / "*")

    def _format_storage(self, java: str) -> None:
        marker = self.data_dir / "scram-users"  # written when formatted with SCRAM users
        if (self.log_dirs / "meta.properties").exists():
            if self.security is not None and not marker.exists():
                raise LocalKafkaError(
                    f"the Kafka storage in {self.log_dirs} was formatted without SCRAM users, "
                    "so no client could log in to it in secure mode; use a fresh data "
                    "directory (XBORDER_DATA_DIR / --data-dir) for the secure broker"
                )
            return
        result = subprocess.run(
            [
                java,
                "-cp",
                self._classpath(),
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={_kafka_uuid()}",
                "-c",
                str(self.properties),
                *self._scram_arguments(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting KRaft storage in {self.log_dirs} failed:\n"
                f"{(result.stdout + result.stderr).strip()}"
            )
        if self.security is not None:
            marker.write_text("\n".join(sorted(self.security.users)) + "\n")

    def _scram_arguments(self) -> list[str]:
        """``--add-scram`` for each user known at format time (the broker needs its own)."""
        if self.security is None:
            return []
        mechanism = self.security.mechanism
        return [
            arg
            for user, password in self.security.users.items()
            for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]

    def _accepts_requests(self) -> bool:
        options = self.security.client_options if self.security else None
        return broker_accepts_requests(self.bootstrap, security=options)

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_kafka_process(pid) else None

    def status(self) -> KafkaStatus:
        """The truth about this data directory's broker."""
        pid = self._running_pid()
        accepts = pid is not None and self._accepts_requests()
        return KafkaStatus(pid is not None, pid, accepts, self.bootstrap, self.data_dir)

    def up(self) -> KafkaStatus:
        """Start the broker (fetching and formatting first if needed) and wait until ready."""
        pid = self._running_pid()
        if pid is not None:
            self._wait_ready(pid, time.monotonic(), lambda: _is_kafka_process(pid))
            return self.status()
        s = self.settings
        for port in (s.port, s.effective_controller_port):
            if not _port_free(s.host, port):
                raise LocalKafkaError(
                    f"port {port} on {s.host} is already in use by another process, so the local "
                    "Kafka cannot listen there; stop that process or choose free ports with "
                    "XBORDER_LOCAL_KAFKA__PORT / XBORDER_LOCAL_KAFKA__CONTROLLER_PORT "
                    "(or --port / --controller-port)"
                )
        self.fetch()
        java = self._java()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage(java)
        started = time.monotonic()
        with open(self.stdout_log, "ab") as out:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{s.heap}",
                    f"-Xms{s.heap}",
                    # Commit and touch the whole heap at start: the broker's memory is then
                    # fixed from the first second instead of creeping up as G1 reaches new
                    # regions, so RSS shows leaks rather than heap warm-up.
                    "-XX:+AlwaysPreTouch",
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                    "-cp",
                    self._classpath(),
                    "kafka.Kafka",
                    str(self.properties),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.data_dir,
            )
        self.pid_file.write_text(str(process.pid))
        self._wait_ready(process.pid, started, lambda: process.poll() is None)
        logger.info("Kafka ready on %s in %.1f s", self.bootstrap, time.monotonic() - started)
        return self.status()

    def _wait_ready(self, pid: int, started: float, alive: Callable[[], bool]) -> None:
        deadline = started + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if not alive():
                raise LocalKafkaError(
                    f"Kafka exited during start-up; last lines of {self.server_log}:\n"
                    f"{_tail(self.server_log)}\n--- {self.stdout_log}:\n{_tail(self.stdout_log)}"
                )
            if self._accepts_requests():
                return
            time.sleep(0.3)
        self._stop_pid(pid)
        raise LocalKafkaError(
            f"Kafka did not accept requests on {self.bootstrap} within "
            f"{self.settings.start_timeout_s:.0f} s (stopped it); last lines of "
            f"{self.server_log}:\n{_tail(self.server_log)}"
        )

    def _stop_pid(self, pid: int, timeout_s: float = 60.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _is_kafka_process(pid):
            _reap(pid)
            time.sleep(0.2)
        if _is_kafka_process(pid):
            logger.warning("Kafka pid %s ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)

    def down(self) -> bool:
        """Stop the broker; returns False when it was not running."""
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._stop_pid(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our own child (it would linger as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def free_port_pair() -> int:
    """A port p such that p and p+1 are free on 127.0.0.1 (broker and controller)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports found on 127.0.0.1")
