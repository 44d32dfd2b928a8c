"""A real Apache Kafka (KRaft, one combined broker and controller) for the tests.

The broker and its dependencies are fetched once from Maven Central with Maven into the
git-ignored ``var/cache/apache-kafka-<version>/`` and run with the machine's Java. Its settings
are docker-compose.yml's ``kafka`` service (SASL, the standard authoriser, no ACL means no
access, no auto-created topics), with the listeners moved to free loopback ports; its topics,
users and ACLs are made by compose's own ``kafka-init`` script, run here with the Kafka tools
from the same jars. So the tests run what the compose stack runs (tests/deploy keeps
deploy/k8s equal to it).

    python -m tests.support.apache_kafka      # fetch, start, print the bootstrap address

Errors are :class:`ApacheKafkaError` with one line that says what is missing or what failed.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.lab.processes import die_with_parent, free_port

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
VERSION = "4.1.1"
CACHE = ROOT / "var" / "cache" / f"apache-kafka-{VERSION}"
# ${NAME:-default} as docker compose interpolates it; $$ is a literal $.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{[A-Za-z0-9_]+:-([^}]*)\}")
_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>vn.hcm.xgw</groupId>
  <artifactId>apache-kafka-for-tests</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""
# The scripts compose's kafka-init calls, as the classes of the fetched jars.
_TOOLS = {
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-acls.sh": "org.apache.kafka.tools.AclCommand",
    "kafka-configs.sh": "kafka.admin.ConfigCommand",
}
_LOG4J = """<Configuration status="warn">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="%d{HH:mm:ss.SSS} %-5level %logger{1} - %msg%n"/>
  </Console></Appenders>
  <Loggers><Root level="${sys:xgw.kafka.level:-WARN}"><AppenderRef ref="out"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/></Loggers>
</Configuration>
"""
_STARTED = "Kafka Server started"


class ApacheKafkaError(Exception):
    """Apache Kafka could not be fetched or started here."""


def missing_tools() -> str | None:
    """Why the broker cannot run on this machine (no Java or no Maven), or ``None``."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


def fetch() -> Path:
    """The folder of the broker's jars, fetched with Maven the first time (about 55 MB)."""
    libs = CACHE / "libs"
    if (libs / f"kafka_2.13-{VERSION}.jar").exists():
        return libs
    if (why := missing_tools()) is not None:
        raise ApacheKafkaError(f"cannot fetch Apache Kafka {VERSION}: {why}")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "pom.xml").write_text(_POM, encoding="utf-8")
    partial = CACHE / f"libs.{os.getpid()}"
    result = subprocess.run(  # noqa: S603 - mvn from PATH, our own arguments
        [  # noqa: S607
            "mvn",
            "-q",
            "-B",
            "-f",
            str(CACHE / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:]
        raise ApacheKafkaError(f"Maven could not fetch Apache Kafka {VERSION}: {tail}")
    partial.replace(libs)
    return libs


def interpolate(value: str) -> str:
    """A compose value as the container sees it with no overrides in the environment."""
    return _INTERPOLATION.sub(lambda m: m.group(1), value).replace("$$", "$")


def admin_connection() -> dict[str, Any]:
    """Settings fields of compose's broker super user ``admin`` (SASL PLAIN, kafka-init's)."""
    environment = compose_service("kafka")["environment"]
    jaas = str(environment["KAFKA_LISTENER_NAME_CLIENT_PLAIN_SASL_JAAS_CONFIG"])
    (secret,) = re.findall(r'user_admin="([^"]*)"', interpolate(jaas))
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "admin",
        "sasl_password": secret,
    }


def compose_service(name: str) -> dict[str, Any]:
    """One service of docker-compose.yml, anchors and merge keys resolved."""
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))[
        "services"
    ]
    return services[name]


def compose_broker_properties() -> dict[str, str]:
    """The ``kafka`` service's KAFKA_* environment as broker properties (the image's rule)."""
    properties = {}
    for key, value in compose_service("kafka")["environment"].items():
        if not key.startswith("KAFKA_") or key == "KAFKA_HEAP_OPTS":
            continue
        name = key.removeprefix("KAFKA_").lower()
        name = name.replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")
        properties[name] = " ".join(interpolate(str(value)).split())
    return properties


@dataclass
class ApacheKafka:
    """One KRaft broker+controller on free loopback ports, set up as docker-compose's."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kafka-")))
    client_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None
    libs: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect (SASL_PLAINTEXT, the compose CLIENT listener)."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        """The broker's own log."""
        return self.directory / "kafka.log"

    def properties(self) -> dict[str, str]:
        """Compose's broker settings with this broker's ports, folder and id."""
        ports = {"CLIENT": self.client_port, "HOST": free_port(), "BROKER": free_port()}
        controller = free_port()
        properties = compose_broker_properties()
        properties.update(
            {
                "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items())
                + f",CONTROLLER://127.0.0.1:{controller}",
                "advertised.listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
                "controller.quorum.voters": f"{properties['node.id']}@127.0.0.1:{controller}",
                "log.dirs": str(self.directory / "data"),
            }
        )
        properties.pop("controller.quorum.bootstrap.servers", None)
        return properties

    def _java(self, main: str, *args: str) -> list[str]:
        assert self.libs is not None
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.xml'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> str:
        """Format the storage, start the broker, wait until it serves; return bootstrap."""
        self.libs = fetch()
        (self.directory / "log4j2.xml").write_text(_LOG4J, encoding="utf-8")
        config = self.directory / "server.properties"
        config.write_text(
            "".join(f"{k}={v}\n" for k, v in sorted(self.properties().items())), encoding="utf-8"
        )
        formatted = subprocess.run(  # noqa: S603 - java from PATH, our arguments
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                "-c",
                str(config),
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if formatted.returncode != 0:
            raise ApacheKafkaError(
                f"kafka-storage format failed: {formatted.stdout}{formatted.stderr}"
            )
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603
                self._java("kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - sets PDEATHSIG only
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                causes = [line for line in lines if "ERROR" in line or "Exception" in line]
                raise ApacheKafkaError(f"Apache Kafka exited at start: {(causes or lines)[-1:]}")
            started = _STARTED in self.log_path.read_text(encoding="utf-8", errors="replace")
            if started and _accepts(self.client_port):
                return self.bootstrap_servers
            time.sleep(0.2)
        self.stop()
        raise ApacheKafkaError(
            f"Apache Kafka did not start in {timeout:.0f} s; see {self.log_path}"
        )

    def run_compose_init(self, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
        """Run compose's kafka-init script against this broker: topics, users, ACLs."""
        service = compose_service("kafka-init")
        tools = self.directory / "bin"
        tools.mkdir(exist_ok=True)
        for script, main in _TOOLS.items():
            command = " ".join(shlex.quote(part) for part in self._java(main))
            (tools / script).write_text(f'#!/bin/sh\nexec {command} "$@"\n', encoding="utf-8")
            (tools / script).chmod(0o755)
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        env |= {"BOOTSTRAP": self.bootstrap_servers, "KAFKA_BIN": str(tools)}
        script = interpolate(service["command"][0])
        result = subprocess.run(  # noqa: S603 - compose's own script, bash from PATH
            ["/bin/bash", "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ApacheKafkaError(f"compose kafka-init failed:\n{result.stdout}\n{result.stderr}")
        return result

    def pause(self) -> None:
        """SIGSTOP the broker (fault tests)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the broker."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker cleanly (SIGTERM, then SIGKILL), remove its folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def main() -> None:
    """Fetch and start a broker set up as compose's; print its address; stop on Ctrl-C."""
    kafka = ApacheKafka()
    try:
        print(f"Apache Kafka {VERSION} on {kafka.start()} (SASL_PLAINTEXT)", flush=True)
        kafka.run_compose_init()
        print("topics, users and ACLs of docker-compose.yml created; Ctrl-C stops", flush=True)
        # Blocked, so that sigwait receives them (unblocked, Python's own handler takes
        # SIGINT and sigwait never returns); a Ctrl-C before this stops the start-up.
        stops = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        signal.sigwait(stops)
    except ApacheKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # Ctrl-C while it was starting
        raise SystemExit(130) from None
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
