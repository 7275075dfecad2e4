"""The Java agency client of ``tests/java/AgencyClient.java``: Apache Avro and kafka-clients
fetched with Maven once (into the Kafka cache directory), run in Java's source-file mode."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from xborder.settings import Settings
from xborder.wire import WireCodec

SOURCE = Path(__file__).resolve().parents[1] / "java" / "AgencyClient.java"
AVRO_VERSION = "1.12.0"
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.xborder</groupId>
  <artifactId>java-agency-client</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-clients</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.avro</groupId>
      <artifactId>avro</artifactId>
      <version>{avro}</version>
    </dependency>
  </dependencies>
</project>
"""


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def schema_file(codec: WireCodec, record: str, directory: Path) -> Path:
    """The current schema of ``record`` with its references inlined, as a Java parser
    reads it (one self-contained file)."""
    path = directory / f"{record}.avsc"
    path.write_text(json.dumps(_clean(codec.store.current(record).parsed)))
    return path


def classpath(settings: Settings) -> str:
    """kafka-clients (the broker's version) and Apache Avro with their runtime dependencies."""
    version = settings.local_kafka.version
    home = settings.local_kafka.cache_dir / f"java-client-{version}-avro-{AVRO_VERSION}"
    libs = home / "libs"
    if not (libs / ".complete").exists():
        home.mkdir(parents=True, exist_ok=True)
        with open(home / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (libs / ".complete").exists():
                with tempfile.TemporaryDirectory(dir=home) as work:
                    pom = Path(work) / "pom.xml"
                    pom.write_text(POM.format(kafka=version, avro=AVRO_VERSION))
                    staging = Path(work) / "libs"
                    subprocess.run(
                        [str(shutil.which("mvn")), "-B", "-q", "-f", str(pom),
                         "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
                         "-DincludeScope=runtime"],
                        check=True, capture_output=True, text=True,
                    )  # fmt: skip
                    if libs.exists():
                        shutil.rmtree(libs)
                    staging.rename(libs)
                (libs / ".complete").touch()
    return ":".join(str(p) for p in sorted(libs.glob("*.jar")))


def run(settings: Settings, *args: str, timeout_s: float = 120) -> list[str]:
    """Run the Java client; returns its standard output's lines (raises on failure)."""
    result = subprocess.run(
        ["java", "-cp", classpath(settings), str(SOURCE), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"java AgencyClient {args[0]} failed:\n{result.stderr[-3000:]}")
    return [line for line in result.stdout.splitlines() if line.startswith("{")]
