"""The embedded Apache Kafka broker: resolved from Maven Central, run in KRaft mode on 127.0.0.1.

Why Kafka 4.1.1: both clients authpilot uses were checked against it (aiokafka 0.14 inside
faust-streaming 0.15.3 joins groups, fetches, produces and recovers changelogs; confluent-kafka
2.16 produces, consumes and administers), so KIP-896's removal of old protocol versions does not
bite. One combined broker+controller is enough for development and CI; production points
AUTHPILOT_KAFKA_BOOTSTRAP at a real cluster and never calls this module.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings

LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"

POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.authpilot</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <!-- kafka_2.13 pulls slf4j-api 1.7 transitively; the log4j binding needs 2.x -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2_PROPERTIES = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.req.name = kafka.request.logger
logger.req.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
"""


class BrokerError(RuntimeError):
    """The local broker could not be installed or started; the message says what to check."""


@dataclass(frozen=True)
class LocalBroker:
    """Paths and ports of one local broker instance (one per port)."""

    home: Path
    version: str
    port: int
    controller_port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBroker:
        return cls(
            settings.kafka_home,
            settings.kafka_version,
            settings.kafka_port,
            settings.kafka_controller_port,
        )

    @property
    def libs(self) -> Path:
        return self.home / f"kafka-{self.version}" / "libs"

    @property
    def instance(self) -> Path:
        return self.home / f"broker-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.instance / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.instance / "logs" / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _log(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def install(broker: LocalBroker) -> Path:
    """Resolve kafka_2.13 and its runtime dependencies with Maven into the cache (idempotent)."""
    marker = broker.libs / ".complete"
    if marker.exists():
        return broker.libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars")
    if shutil.which("java") is None:
        raise BrokerError("java is not on PATH; Kafka 4 needs Java 17 or newer")
    work = broker.libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(
        POM_TEMPLATE.format(kafka=broker.version, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION)
    )
    tmp = work / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    _log(f"resolving org.apache.kafka:kafka_2.13:{broker.version} with Maven (first run only)")
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BrokerError(f"Maven could not resolve Kafka {broker.version}:\n{res.stdout[-4000:]}")
    jars = list(tmp.glob("kafka_2.13-*.jar"))
    if not jars:
        raise BrokerError(f"Maven finished but no kafka_2.13 jar is in {tmp}")
    shutil.rmtree(broker.libs, ignore_errors=True)
    tmp.rename(broker.libs)
    marker.write_text(broker.version)
    _log(f"{len(list(broker.libs.glob('*.jar')))} jars in {broker.libs}")
    return broker.libs


def _server_properties(broker: LocalBroker) -> str:
    data = broker.instance / "data"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{broker.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{broker.port},"
            f"CONTROLLER://127.0.0.1:{broker.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # A single developer broker: rebalance at once instead of waiting 3 s for joiners.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=24",
            "",
        ]
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(broker: LocalBroker) -> int | None:
    """The pid of this instance's broker if it is alive."""
    try:
        pid = int(broker.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ready(broker: LocalBroker, timeout: float) -> bool:
    """The broker is ready when a client can read metadata, not merely when the port opens."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    admin = None
    while time.monotonic() < deadline:
        if port_open(broker.port):
            # created only once the port is open: librdkafka logs every refused connect
            admin = admin or AdminClient({"bootstrap.servers": broker.bootstrap})
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return True
            except Exception:
                pass
        time.sleep(0.3)
    return False


def start(broker: LocalBroker, timeout: float = 90.0, heap: str = "768m") -> str:
    """Start the broker unless it already runs; return its bootstrap address (idempotent)."""
    if running_pid(broker) and _ready(broker, 20):
        _log(f"already running on {broker.bootstrap} (pid {running_pid(broker)})")
        return broker.bootstrap
    if port_open(broker.port):
        raise BrokerError(
            f"port {broker.port} is taken by another process; set AUTHPILOT_KAFKA_PORT "
            "or point AUTHPILOT_KAFKA_BOOTSTRAP at that cluster"
        )
    install(broker)
    inst = broker.instance
    (inst / "logs").mkdir(parents=True, exist_ok=True)
    props = inst / "server.properties"
    props.write_text(_server_properties(broker))
    log_cfg = inst / "log4j2.properties"
    log_cfg.write_text(LOG4J2_PROPERTIES.format(log=broker.log_file))
    classpath = f"{broker.libs}/*"
    java_opts = [f"-Dlog4j2.configurationFile={log_cfg}", "-Dkafka.logs.dir=" + str(inst / "logs")]
    if not (inst / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        res = subprocess.run(
            ["java", *java_opts, "-cp", classpath, "kafka.tools.StorageTool", "format"]
            # "--cluster-id=<id>": a urlsafe-base64 id starts with "-" one time in 64, which
            # argparse would take for an option if the id were a separate argument
            + [f"--cluster-id={cluster_id}", "-c", str(props)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{res.stdout}\n{res.stderr}")
    # The child keeps its own copy of the log descriptor; ours can close at once.
    with open(inst / "logs" / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            ["java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", *java_opts]
            + ["-cp", classpath, "kafka.Kafka", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    broker.pid_file.write_text(str(proc.pid))
    _log(f"starting Kafka {broker.version} on {broker.bootstrap} (pid {proc.pid})")
    if not _ready(broker, timeout):
        tail = broker.log_file.read_text()[-3000:] if broker.log_file.exists() else ""
        stop(broker)
        raise BrokerError(f"broker did not become ready in {timeout:.0f}s; log tail:\n{tail}")
    _log(f"ready on {broker.bootstrap}")
    return broker.bootstrap


def stop(broker: LocalBroker, timeout: float = 30.0) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL after timeout); True if one was running."""
    pid = running_pid(broker)
    if pid is None:
        broker.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    broker.pid_file.unlink(missing_ok=True)
    _log(f"stopped pid {pid}")
    return True


def reset(broker: LocalBroker) -> None:
    """Stop the broker and delete its data (topics, offsets); the jar cache stays."""
    stop(broker)
    shutil.rmtree(broker.instance, ignore_errors=True)


def status(broker: LocalBroker) -> str:
    """One line: running or not, where, which version."""
    pid = running_pid(broker)
    if pid and port_open(broker.port):
        return f"running: Kafka {broker.version} on {broker.bootstrap} (pid {pid})"
    if pid:
        return f"starting or stuck: pid {pid}, port {broker.port} not accepting yet"
    return f"stopped (would run Kafka {broker.version} on {broker.bootstrap})"
