"""A real schema registry for the tests: Apicurio Registry on the JVM, without Docker.

Apicurio Registry serves the Confluent REST API under ``/apis/ccompat/v7``, which is
what confluent-kafka's ``SchemaRegistryClient`` speaks. Its runnable image is not on
Maven Central, only its modules are, so a small Maven project is written here and built
once with the Quarkus plugin into a cache outside the repository (``<cache>/schema-
registry/apicurio-<version>``); later sessions reuse the jar and start in a few seconds.
Storage is the registry's in-memory H2 database: every start is empty.

Two gaps in Maven Central are bridged, both outside the REST API the tests use: the
JSON-Schema validator (``org.everit.json.schema``, on JitPack only) is left out, and the
deployment half of Apicurio's config-index Quarkus extension is missing, so its one bean
(the list of dynamic settings, which feeds the admin UI) is produced empty by a class of
our own. Apicurio 2.4.2 is the newest release whose modules all resolve from Maven
Central; 2.6 and 3.x lack ``apicurio-registry-schema-util-provider`` there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from xborder.settings import load_settings

APICURIO_VERSION = "2.4.2.Final"
QUARKUS_VERSION = "2.16.4.Final"
"""The Quarkus release Apicurio 2.4.2 is built on (its parent POM's quarkus.version)."""
CCOMPAT_PATH = "/apis/ccompat/v7"
BUILD_TIMEOUT_S = 900.0
START_TIMEOUT_S = 90.0
RUNNER_JAR = "registry-runtime-1-runner.jar"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.xborder</groupId>
  <artifactId>registry-runtime</artifactId>
  <version>1</version>
  <packaging>jar</packaging>
  <properties>
    <maven.compiler.source>17</maven.compiler.source>
    <maven.compiler.target>17</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>io.apicurio</groupId>
        <artifactId>apicurio-registry</artifactId>
        <version>{apicurio}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>io.apicurio</groupId>
      <artifactId>apicurio-registry-app</artifactId>
      <version>{apicurio}</version>
      <exclusions>
        <exclusion>
          <groupId>com.github.everit-org.json-schema</groupId>
          <artifactId>*</artifactId>
        </exclusion>
        <exclusion>
          <groupId>io.apicurio</groupId>
          <artifactId>apicurio-common-app-components-config-index</artifactId>
        </exclusion>
        <exclusion>
          <groupId>io.apicurio</groupId>
          <artifactId>apicurio-registry-config-index</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <!-- The registry's own application.properties sits in its jar; Quarkus reads the
             application's, so copy it into ours before the Quarkus build. -->
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.6.1</version>
        <executions>
          <execution>
            <id>registry-config</id>
            <phase>process-resources</phase>
            <goals><goal>unpack</goal></goals>
            <configuration>
              <artifactItems>
                <artifactItem>
                  <groupId>io.apicurio</groupId>
                  <artifactId>apicurio-registry-app</artifactId>
                  <version>{apicurio}</version>
                  <includes>application.properties</includes>
                  <outputDirectory>${{project.build.outputDirectory}}</outputDirectory>
                </artifactItem>
              </artifactItems>
            </configuration>
          </execution>
        </executions>
      </plugin>
      <plugin>
        <groupId>io.quarkus</groupId>
        <artifactId>quarkus-maven-plugin</artifactId>
        <version>{quarkus}</version>
        <executions>
          <execution>
            <goals><goal>build</goal></goals>
          </execution>
        </executions>
      </plugin>
    </plugins>
  </build>
</project>
"""

# Lower ordinal than application.properties: adds to the registry's settings, never overrides.
EXTRA_CONFIG = """\
# The registry's classes come in a dependency jar without a Jandex index: index them for CDI.
quarkus.index-dependency.registry-app.group-id=io.apicurio
quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app
"""

PRODUCER_JAVA = """\
package local.xborder;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/** Stands in for the config-index extension, whose deployment jar Maven Central lacks. */
@ApplicationScoped
public class ConfigPropertyListProducer {
    @Produces
    @ApplicationScoped
    DynamicConfigPropertyList dynamicConfigPropertyList() {
        return new DynamicConfigPropertyList(List.of());
    }
}
"""


class RegistryUnavailable(RuntimeError):
    """The registry could not be built or started; the message says what failed."""


def cache_dir() -> Path:
    """Where the built registry is kept, beside the local Kafka's jars."""
    return load_settings().local_kafka.cache_dir.parent / "schema-registry"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise RegistryUnavailable("Java 17+ is needed to run the registry; set JAVA_HOME")
    return java


def build_registry(root: Path | None = None) -> Path:
    """Build the registry once (Maven + Quarkus) and return the directory of its runner jar."""
    home = (root or cache_dir()) / f"apicurio-{APICURIO_VERSION}"
    dist = home / "dist"
    if (dist / ".complete").exists():
        return dist
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryUnavailable("Maven ('mvn') is not on PATH; apt-get install maven")
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same version
        if (dist / ".complete").exists():
            return dist
        with tempfile.TemporaryDirectory(dir=home) as work_dir:
            work = Path(work_dir)
            (work / "pom.xml").write_text(
                POM.format(apicurio=APICURIO_VERSION, quarkus=QUARKUS_VERSION)
            )
            java_dir = work / "src/main/java/local/xborder"
            java_dir.mkdir(parents=True)
            (java_dir / "ConfigPropertyListProducer.java").write_text(PRODUCER_JAVA)
            meta = work / "src/main/resources/META-INF"
            meta.mkdir(parents=True)
            (meta / "microprofile-config.properties").write_text(EXTRA_CONFIG)
            try:
                result = subprocess.run(
                    [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "package", "-DskipTests"],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=BUILD_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as exc:
                raise RegistryUnavailable(
                    f"building Apicurio Registry {APICURIO_VERSION} took over "
                    f"{BUILD_TIMEOUT_S:.0f} s (Maven Central slow or unreachable?)"
                ) from exc
            target = work / "target"
            if result.returncode != 0 or not (target / RUNNER_JAR).exists():
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
                raise RegistryUnavailable(
                    f"Maven could not build Apicurio Registry {APICURIO_VERSION} "
                    f"(exit {result.returncode}):\n{tail}"
                )
            if dist.exists():
                shutil.rmtree(dist)
            dist.mkdir()
            (target / RUNNER_JAR).rename(dist / RUNNER_JAR)
            (target / "lib").rename(dist / "lib")
        (dist / ".complete").touch()
    return dist


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_registry(log_dir: Path) -> Iterator[str]:
    """Start a fresh, empty registry on a free port; yield its Confluent-API base URL."""
    dist = build_registry()
    port = _free_port()
    log_file = log_dir / "schema-registry.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [
                _java(),
                "-Xmx256m",
                "-XX:+UseSerialGC",
                f"-Dquarkus.http.port={port}",
                "-Dquarkus.http.host=127.0.0.1",
                "-jar",
                str(dist / RUNNER_JAR),
            ],
            cwd=log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}{CCOMPAT_PATH}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
                state = (
                    f"exited with {process.returncode}"
                    if process.poll() is not None
                    else f"not ready after {START_TIMEOUT_S:.0f} s"
                )
                raise RegistryUnavailable(f"Apicurio Registry {state}; log {log_file}:\n{tail}")
            time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real schema registry for the whole test session.

    ``SCHEMA_REGISTRY_TEST_URL`` points the tests at a registry already running
    (Confluent's, Karapace, Apicurio); without it, Apicurio is built and started here.
    """
    external = os.environ.get("SCHEMA_REGISTRY_TEST_URL")
    if external:
        yield external.rstrip("/")
        return
    try:
        with running_registry(tmp_path_factory.mktemp("schema-registry")) as url:
            yield url
    except RegistryUnavailable as exc:
        pytest.fail(f"the schema registry for the test session did not start: {exc}", False)
