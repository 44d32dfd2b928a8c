"""All configuration, in one frozen pydantic-settings object read from ``XGW_*`` variables.

Every environment variable the gateway reads is a field here (prefix ``XGW_``); CLI flags
override them. :meth:`Settings.masked` is the only form that may be logged.
"""

from __future__ import annotations

import difflib
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.errors import ConfigError
from gateway.names import TopicNames

# The defaults other modules need live here, so that settings stay a leaf (import-linter).
DEFAULT_POLICY_FILE = Path(__file__).parent / "data" / "policy.toml"
DEFAULT_CACHE_BYTES = 4 * 1024 * 1024  # the state store's SQLite page cache
_MAX_PORT = 65535


class Settings(BaseSettings):
    """Settings of the gateway, the demo and the agency connectors."""

    model_config = SettingsConfigDict(env_prefix="XGW_", frozen=True, extra="forbid")

    # Kafka connection. Empty bootstrap servers mean: start the embedded broker (demo only).
    bootstrap_servers: str = Field(
        default="", description="host:port[,host:port]; empty = embedded"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None

    # Exchange layout.
    topic_prefix: str = Field(default="xgw", pattern=r"^[a-zA-Z0-9._-]{1,100}$")
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=7, description="3 in production")
    app_id: str = Field(
        default="xgw-gateway",
        pattern=r"^[a-zA-Z0-9._-]{1,200}$",
        description="the workers' consumer group, and the prefix of their transactional ids",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="exactly_once: each batch's outputs and offsets in one Kafka transaction "
        "(Apache Kafka; the embedded broker has no transactions)",
    )
    pki_dir: Path = Field(
        default=Path("var/pki"), description="CA, certificates, keys; never committed"
    )
    policy_file: Path = DEFAULT_POLICY_FILE

    # Checks.
    max_record_bytes: int = Field(default=256 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    max_string_chars: int = Field(default=16_384, ge=256)
    max_event_age_seconds: float = Field(default=24 * 3600.0, gt=0)
    max_clock_skew_seconds: float = Field(default=300.0, ge=0)
    # Just long enough: an event older than max_event_age + max_clock_skew is refused as stale.
    replay_window_seconds: float = Field(default=24 * 3600.0 + 300.0, gt=0)
    replay_max_entries: int = Field(default=1_000_000, ge=1)
    crl_refresh_seconds: float = Field(default=1.0, gt=0, description="CRL file check interval")

    # Audit trail.
    audit_store: str = Field(
        default="sqlite:///var/audit/audit.db",
        description="sqlite:///path or postgresql://user@host:port/db",
    )
    audit_key_file: Path = Field(
        default=Path("var/audit/subject.key"),
        description="secret of the keyed subject hash; created when missing; never committed",
    )
    audit_checkpoint_every: int = Field(default=1000, ge=1, description="entries per checkpoint")
    audit_checkpoint_seconds: float = Field(default=60.0, gt=0, description="or this often")
    audit_group: str = Field(default="xgw-audit-writer", description="the writer's consumer group")
    audit_publish_seconds: float = Field(
        default=1.0, ge=0, description="seals published to the agencies at most this often"
    )
    # RFC 3161 time-stamps of the checkpoints (docs/audit.md); none without a TSA URL.
    audit_tsa_url: str | None = Field(
        default=None, description="http(s) URL of an RFC 3161 Time-Stamp Authority; none = off"
    )
    audit_tsa_cafile: Path | None = Field(
        default=None,
        description="the TSA's trust anchors (PEM); needed with the URL, and by audit verify",
    )
    audit_tsa_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="how long the writer waits for the TSA"
    )
    checkpoint_dir: Path = Field(
        default=Path("var/checkpoints"),
        description="where agency clients keep the audit checkpoints they hold (<agency>.jsonl)",
    )

    # Worker tuning (see docs/operations.md for why each value).
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 = pick a free port")
    metrics_host: str = "127.0.0.1"
    batch_max: int = Field(default=500, ge=1)
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=5000)
    session_timeout_seconds: float = Field(default=6.0, gt=0)
    heartbeat_interval_seconds: float = Field(default=0.5, gt=0)
    rebalance_timeout_seconds: float = Field(default=6.0, gt=0)
    producer_linger_seconds: float = Field(default=0.0, ge=0)
    producer_max_batch_bytes: int = Field(default=262_144, ge=1024)
    state_dir: Path | None = Field(
        default=None,
        description="where the worker's state scratch file goes; none = the system's temp dir",
    )
    state_cache_bytes: int = Field(
        default=DEFAULT_CACHE_BYTES,
        ge=64 * 1024,
        description="SQLite page cache of the state store",
    )

    # The exchange monitor (xgw monitor, a faust-streaming app; docs/monitor.md).
    monitor_app_id: str = Field(
        default="xgw-monitor",
        pattern=r"^[a-zA-Z0-9._-]{1,200}$",
        description="the monitor's faust app id: its consumer group and its tables' changelogs",
    )
    monitor_port: int = Field(
        default=6066,
        ge=0,
        le=65535,
        description="the monitor's web view: /monitor (JSON) and /metrics; 0 = a free port",
    )
    monitor_short_window_seconds: float = Field(default=60.0, ge=1, description="tumbling")
    monitor_long_window_seconds: float = Field(default=3600.0, ge=1, description="tumbling")
    monitor_keep_seconds: float = Field(default=86_400.0, ge=1, description="windows kept")
    monitor_baseline_windows: int = Field(
        default=10, ge=1, le=1440, description="short windows before the current one: a baseline"
    )
    monitor_bulk_min_subjects: int = Field(
        default=50, ge=1, description="distinct citizens per short window never alerted below"
    )
    monitor_bulk_factor: float = Field(
        default=5.0, gt=1, description="bulk look-up: distinct citizens above factor x baseline"
    )
    monitor_reject_min_decisions: int = Field(
        default=20, ge=1, description="decisions per short window before a ratio counts"
    )
    monitor_reject_ratio: float = Field(
        default=0.5, gt=0, le=1, description="rejection ratio never alerted below"
    )
    monitor_reject_factor: float = Field(
        default=3.0, gt=1, description="rejection spike: ratio above factor x baseline ratio"
    )
    monitor_silence_seconds: float = Field(
        default=300.0, gt=0, description="an active agency with nothing for this long is silent"
    )
    monitor_active_windows: int = Field(
        default=3, ge=1, description="active: it published in each of this many short windows"
    )
    monitor_learning_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="a recipient's history before a type it never received counts as new",
    )
    monitor_stall_seconds: float = Field(
        default=60.0, gt=0, description="committed offset still while there is lag: stalled"
    )

    # Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @model_validator(mode="after")
    def _replay_covers_freshness(self) -> Settings:
        # An event older than the replay window must already be refused as stale; otherwise
        # a replay could arrive after its id was forgotten and still be fresh enough.
        if self.replay_window_seconds < self.max_event_age_seconds + self.max_clock_skew_seconds:
            raise ValueError(
                "replay_window_seconds must be at least max_event_age_seconds + "
                "max_clock_skew_seconds"
            )
        return self

    @model_validator(mode="after")
    def _connection_is_complete(self) -> Settings:
        # Checked here, not by the Kafka client deep in a traceback: the mistakes a host user
        # makes against a secured broker (docs/operations.md, "Deploying on Apache Kafka").
        for server in filter(None, (s.strip() for s in self.bootstrap_servers.split(","))):
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) <= _MAX_PORT:
                raise ValueError(
                    f"XGW_BOOTSTRAP_SERVERS: {server!r} is not host:port (e.g. 127.0.0.1:9092)"
                )
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"XGW_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"XGW_SECURITY_PROTOCOL={self.security_protocol} needs XGW_SASL_MECHANISM, "
                    f"XGW_SASL_USERNAME and XGW_SASL_PASSWORD (missing: {', '.join(missing)})"
                )
        elif self.sasl_mechanism is not None:
            raise ValueError(
                f"XGW_SASL_MECHANISM is set but XGW_SECURITY_PROTOCOL={self.security_protocol} "
                "does not use it (SASL_PLAINTEXT or SASL_SSL)"
            )
        if self.ssl_cafile is not None and not self.ssl_cafile.is_file():
            raise ValueError(f"XGW_SSL_CAFILE {self.ssl_cafile}: no such file")
        return self

    @model_validator(mode="after")
    def _tsa_is_complete(self) -> Settings:
        # A token that cannot be verified proves nothing: the writer checks each one it gets
        # against the CA file, so a URL without one is a mistake, said at start.
        if self.audit_tsa_url is not None:
            scheme, _, rest = self.audit_tsa_url.partition("://")
            if scheme not in {"http", "https"} or not rest.strip("/"):
                raise ValueError(
                    f"XGW_AUDIT_TSA_URL: {self.audit_tsa_url[:60]!r} is not an http:// or "
                    "https:// URL (e.g. https://tsa.example.vn/tsr)"
                )
            if self.audit_tsa_cafile is None:
                raise ValueError(
                    "XGW_AUDIT_TSA_URL is set but XGW_AUDIT_TSA_CAFILE is not: the writer "
                    "verifies every time-stamp against the TSA's CA certificates (PEM)"
                )
        if self.audit_tsa_cafile is not None and not self.audit_tsa_cafile.is_file():
            raise ValueError(f"XGW_AUDIT_TSA_CAFILE {self.audit_tsa_cafile}: no such file")
        return self

    @property
    def topics(self) -> TopicNames:
        """The topic names of this exchange."""
        return TopicNames(self.topic_prefix)

    def kafka_options(self) -> dict[str, Any]:
        """Connection options common to aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in {"SSL", "SASL_SSL"}:
            # The standard library's context (what aiokafka's helper builds): the system's CAs
            # unless a CA file is given, certificates and host names checked.
            options["ssl_context"] = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
        return options

    def consumer_options(self) -> dict[str, Any]:
        """:meth:`kafka_options` for a consumer of the gateway's outputs: committed records only.

        In exactly-once mode the outputs are written in transactions; a ``read_committed``
        consumer never sees those of an aborted or fenced one (without transactions, it reads
        as any consumer does).
        """
        return {**self.kafka_options(), "isolation_level": "read_committed"}

    def masked(self) -> dict[str, Any]:
        """The settings with secrets masked, for logs."""
        return self.model_dump(mode="json")  # SecretStr dumps as "**********"


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``XGW_*`` environment that reproduces ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"XGW_{name.upper()}"] = str(value)
    return env


def misspelled_settings(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``XGW_*`` variable that is no setting but looks like one (a typo).

    pydantic-settings ignores unknown variables, so ``XGW_POLICY_FIEL`` would silently leave
    the default in force. Variables that resemble no setting (a test's own) are left alone.
    """
    known = [f"XGW_{name.upper()}" for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        if name.startswith("XGW_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                warnings.append(f"{name} is not a setting (did you mean {close[0]}?); ignored")
    return warnings


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, then apply non-``None`` overrides (CLI flags)."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if not name:  # a rule across settings names its variables itself
            raise ConfigError(message) from exc
        raise ConfigError(f"setting XGW_{name.upper()}: {message}") from exc
