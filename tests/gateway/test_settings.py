"""Settings: XGW_* environment variables, overrides, validation and masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings, settings_env

SECRET = "s3cr3t-Ph\u1ea1m"  # noqa: S105 - a made-up test password, with a non-ASCII letter


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove any XGW_* variable of the machine so each test sets exactly what it reads."""
    for name in list(os.environ):
        if name.upper().startswith("XGW_"):
            monkeypatch.delenv(name)


def test_defaults_without_environment() -> None:
    """With no XGW_* variables the defaults apply (embedded broker, 4 partitions)."""
    settings = load_settings()
    assert settings.bootstrap_servers == ""
    assert settings.topic_partitions == 4
    assert settings.sasl_password is None


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """XGW_* variables fill the matching fields, converted to their types."""
    monkeypatch.setenv("XGW_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("XGW_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("XGW_REPLAY_WINDOW_SECONDS", "186400.5")
    monkeypatch.setenv("XGW_PKI_DIR", "/etc/xgw/pki")
    monkeypatch.setenv("XGW_LOG_FORMAT", "json")
    monkeypatch.setenv("XGW_SASL_PASSWORD", SECRET)
    settings = load_settings()
    assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.topic_partitions == 12
    assert settings.replay_window_seconds == 186400.5
    assert settings.pki_dir == Path("/etc/xgw/pki")
    assert settings.log_format == "json"
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == SECRET


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-None override (a CLI flag) beats the environment variable."""
    monkeypatch.setenv("XGW_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("XGW_METRICS_PORT", "9000")
    settings = load_settings(topic_partitions=3, metrics_port=None)
    assert settings.topic_partitions == 3
    assert settings.metrics_port == 9000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("XGW_TOPIC_PARTITIONS", "0"),
        ("XGW_METRICS_PORT", "not-a-port"),
        ("XGW_METRICS_PORT", "70000"),
        ("XGW_LOG_LEVEL", "TRACE"),
        ("XGW_SECURITY_PROTOCOL", "SASL"),
        ("XGW_TOPIC_PREFIX", "xgw/../etc"),
        ("XGW_MAX_RECORD_BYTES", "100"),
        ("XGW_REPLAY_WINDOW_SECONDS", "0"),
    ],
)
def test_invalid_environment_value_names_the_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalid value raises a one-line ConfigError that names the XGW_ variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"setting {name}: ")
    assert "\n" not in message


def test_invalid_override_names_the_variable() -> None:
    """An invalid override is reported under the name of its XGW_ variable."""
    with pytest.raises(ConfigError, match=r"^setting XGW_BATCH_MAX: "):
        load_settings(batch_max=0)


def test_unknown_override_is_refused() -> None:
    """An override that is not a setting is refused instead of ignored."""
    with pytest.raises(ConfigError, match=r"^setting XGW_COLOUR: "):
        load_settings(colour="red")


def test_masked_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The masked dump keeps the user name but never the SASL password."""
    monkeypatch.setenv("XGW_SASL_USERNAME", "police-gw")
    monkeypatch.setenv("XGW_SASL_PASSWORD", SECRET)
    settings = load_settings()
    masked = settings.masked()
    assert masked["sasl_username"] == "police-gw"
    assert masked["sasl_password"] == "**********"  # noqa: S105 - the mask, not a password
    assert SECRET not in repr(masked)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_masked_is_plain_json_values() -> None:
    """The masked dump holds only JSON types, ready for a structured log line."""
    masked = load_settings(pki_dir=Path("/var/pki")).masked()
    assert masked["pki_dir"] == "/var/pki"
    assert masked["topic_partitions"] == 4
    assert set(masked) == set(Settings.model_fields)


def test_settings_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment from settings_env() rebuilds equal settings in a fresh process."""
    original = load_settings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="police-gw",
        sasl_password=SecretStr(SECRET),
        topic_prefix="hcm.xgw",
        topic_partitions=16,
        pki_dir=Path("/etc/xgw/pki"),
        replay_window_seconds=190000.25,
        fetch_max_wait_ms=50,
        log_level="DEBUG",
    )
    env = settings_env(original)
    assert all(name.startswith("XGW_") for name in env)
    assert env["XGW_SASL_PASSWORD"] == SECRET
    assert "XGW_SSL_CAFILE" not in env  # None values are left unset
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rebuilt = load_settings()
    assert rebuilt == original
    assert rebuilt.sasl_password is not None
    assert rebuilt.sasl_password.get_secret_value() == SECRET


def test_settings_env_round_trips_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default settings, including the empty bootstrap servers, survive the environment."""
    original = load_settings()
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.topic_partitions = 8  # type: ignore[misc]


def test_topic_names_derive_from_the_prefix() -> None:
    """Topic names derive from topic_prefix."""
    settings = load_settings(topic_prefix="hcm")
    assert settings.topics.ingress("police") == "hcm.ingress.police"
    assert load_settings().topics.deliver("land") == "xgw.deliver.land"


def test_kafka_options_carry_sasl_credentials() -> None:
    """With a SASL mechanism the client options carry the unmasked credentials."""
    settings = load_settings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="police-gw",
        sasl_password=SecretStr(SECRET),
    )
    assert settings.kafka_options() == {
        "bootstrap_servers": "kafka:9093",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "police-gw",
        "sasl_plain_password": SECRET,
    }


def test_replay_window_must_cover_the_accepted_event_age() -> None:
    """A replay window shorter than event age plus skew is refused, naming the rule."""
    with pytest.raises(ConfigError, match="replay_window_seconds must be at least"):
        load_settings(replay_window_seconds=3600, max_event_age_seconds=7200)


def test_state_dir_is_read_and_unset_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """XGW_STATE_DIR names where a worker's state file goes; unset, the store uses the temp dir."""
    assert load_settings().state_dir is None
    monkeypatch.setenv("XGW_STATE_DIR", "/var/lib/xgw/state")
    assert load_settings().state_dir == Path("/var/lib/xgw/state")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "XGW_SECURITY_PROTOCOL=SASL_SSL needs XGW_SASL_MECHANISM, XGW_SASL_USERNAME and "
            "XGW_SASL_PASSWORD (missing: XGW_SASL_MECHANISM, XGW_SASL_USERNAME, "
            "XGW_SASL_PASSWORD)",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
            },
            "(missing: XGW_SASL_PASSWORD)",
        ),
        ({"sasl_mechanism": "PLAIN"}, "XGW_SASL_MECHANISM is set but XGW_SECURITY_PROTOCOL"),
        (
            {"security_protocol": "SSL", "ssl_cafile": Path("/nonexistent.pem")},
            "XGW_SSL_CAFILE /nonexistent.pem: no such file",
        ),
        ({"bootstrap_servers": "127.0.0.1"}, "'127.0.0.1' is not host:port"),
        ({"bootstrap_servers": "a:9092,b:99999"}, "'b:99999' is not host:port"),
    ],
)
def test_an_incomplete_connection_is_refused_in_one_sentence(
    values: dict[str, object], message: str
) -> None:
    """The mistakes a host user makes against a secured broker, caught before any client."""
    with pytest.raises(ConfigError) as raised:
        load_settings(**values)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not str(raised.value).startswith("Value error")


def test_a_complete_secured_connection_loads(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not read until a client connects")
    settings = load_settings(
        bootstrap_servers="kafka-1:9093, kafka-2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="police",
        sasl_password=SecretStr(SECRET),
        ssl_cafile=cafile,
    )
    assert settings.ssl_cafile == cafile
