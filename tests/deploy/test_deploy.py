"""The deployment files stay true to the code: topics, settings, commands, metrics and ACLs.

The compose stack and the Kubernetes manifests cannot be started here, so their one-shot
scripts run against recording stubs of ``xgw`` and the Kafka tools, and everything they name
is checked against the code that defines it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from gateway.cli import cli
from gateway.core.policy import load_policy
from gateway.monitor.metrics import MonitorMetrics
from gateway.names import TopicNames
from gateway.runtime.metrics import GatewayMetrics
from gateway.runtime.transactions import transactional_id
from gateway.settings import DEFAULT_POLICY_FILE, Settings
from schemas.registry import REGISTRY

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "xgw.json"
GRAFANA_DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "xgw.yml"
K8S = DEPLOY / "k8s"
XGW_IMAGE = "hcmc-xgw:local"
METRICS_PORT = 9464
MONITOR_PORT = Settings.model_fields["monitor_port"].default
MONITOR_APP_ID = Settings.model_fields["monitor_app_id"].default
# The monitor's faust tables (gateway/monitor/app.py); faust names their changelogs
# <app id>-<table>-changelog and creates them itself, so no deployment file lists them.
MONITOR_TABLES = ("short", "long", "known")
# The workers' state changelog (gateway/runtime/state.py), compacted.
REPLAY_CHANGELOG = TopicNames("xgw").state
# Being added to gateway/runtime/metrics.py; alerts and dashboard use them already.
PENDING_METRICS = frozenset(
    {
        "xgw_certificate_expiry_seconds",
        "xgw_consumer_lag_records",
        "xgw_signature_verifications_total",
    }
)
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}
_XGW_METRIC = re.compile(r"\bxgw_[a-z0-9_]+\b")
_XGW_VARIABLE = re.compile(r"\bXGW_[A-Z][A-Z0-9_]*\b")
# ${NAME:-default} as docker compose interpolates it; $$ is a literal $.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{[A-Za-z0-9_]+:-([^}]*)\}")


# --- what the code defines ---------------------------------------------------------------


@cache
def policy_agencies() -> tuple[str, ...]:
    """The agencies of the shipped policy."""
    return load_policy(DEFAULT_POLICY_FILE, REGISTRY).agencies


def exchange_topics() -> set[str]:
    """Every topic the deployment must create: the exchange's and the replay changelog."""
    return {*TopicNames("xgw").all_for(policy_agencies()), REPLAY_CHANGELOG}


def agency_acls(agency: str) -> set[tuple[str, str, str, frozenset[str]]]:
    """(resource type, pattern, name, operations) an agency's principal must have, no more."""
    topics = TopicNames("xgw")
    return {
        ("topic", "literal", topics.ingress(agency), frozenset({"write", "describe"})),
        ("topic", "literal", topics.deliver(agency), frozenset({"read", "describe"})),
        ("topic", "literal", topics.receipts(agency), frozenset({"read", "describe"})),
        ("topic", "literal", topics.checkpoints, frozenset({"read", "describe"})),
        ("group", "prefix", f"{agency}-", frozenset({"read"})),
    }


@cache
def exposed_metrics() -> frozenset[str]:
    """Sample names a worker's or the monitor's /metrics serves, derived from their registries."""
    names: set[str] = set()
    registries = [
        GatewayMetrics(REGISTRY.types()).registry,
        MonitorMetrics(policy_agencies()).registry,
    ]
    for family in (f for r in registries for f in r.collect()):
        names.update(family.name + s for s in _SAMPLE_SUFFIXES.get(family.type, ("",)))
    return frozenset(names)


def resolve(argv: list[str]) -> click.Command | None:
    """The ``xgw`` command that ``argv`` (without the program name) runs, or ``None``."""
    command: click.Command = cli
    for word in argv:
        if not isinstance(command, click.Group):
            break
        found = command.get_command(click.Context(command), word)
        if found is None:
            return None
        command = found
    return None if isinstance(command, click.Group) else command


def settings_from(env: dict[str, str]) -> Settings:
    """Settings built from ``XGW_*`` variables only (validates names and values)."""
    return Settings(**{k.removeprefix("XGW_").lower(): v for k, v in env.items()})


# --- reading the deployment files ---------------------------------------------------------


def interpolate(value: str) -> str:
    """A compose value as the container sees it with no overrides in the environment."""
    return _INTERPOLATION.sub(lambda m: m.group(1), value).replace("$$", "$")


@cache
def compose() -> dict[str, Any]:
    """docker-compose.yml, anchors and merge keys resolved."""
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    """The compose services by name."""
    return compose()["services"]


def service_env(name: str) -> dict[str, str]:
    """A compose service's environment, interpolated."""
    env = services()[name].get("environment", {})
    return {k: interpolate(str(v)) for k, v in env.items()}


def xgw_services() -> list[str]:
    """Compose services that run the gateway image with its ``xgw`` entry point."""
    return [
        name
        for name, service in services().items()
        if service.get("image") == XGW_IMAGE and "entrypoint" not in service
    ]


def services_running(argv: list[str]) -> list[str]:
    """Compose services whose command is exactly ``argv``."""
    return [n for n in xgw_services() if services()[n].get("command") == argv]


@cache
def k8s_documents() -> list[dict[str, Any]]:
    """Every document of every manifest under deploy/k8s."""
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    """The manifests of one kind."""
    return [d for d in k8s_documents() if d["kind"] == kind]


def k8s_containers() -> Iterator[dict[str, Any]]:
    """Every container of every Deployment."""
    for deployment in k8s_kind("Deployment"):
        yield from deployment["spec"]["template"]["spec"]["containers"]


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment; values from Secrets become a placeholder."""
    return {e["name"]: e.get("value", "from-a-secret") for e in container.get("env", [])}


def alert_rules() -> dict[str, dict[str, Any]]:
    """The alert rules of group xgw, by name."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    (group,) = (g for g in groups if g["name"] == "xgw")
    return {r["alert"]: r for r in group["rules"]}


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def write_stub(directory: Path, name: str, log: Path) -> None:
    """An executable that appends its name and arguments as one JSON line to ``log``."""
    stub = directory / name
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(log)!r}, 'a', encoding='utf-8') as f:\n"
        f"    f.write(json.dumps([{name!r}, *sys.argv[1:]]) + '\\n')\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)


def run_one_shot(name: str, tmp_path: Path, stubs: list[str], **extra: str) -> list[list[str]]:
    """Run a compose one-shot service's script against stubs; return the calls they saw."""
    service = services()[name]
    shell, flag = service["entrypoint"]
    (script,) = service["command"]
    log, bin_dir = tmp_path / "calls.jsonl", tmp_path / "bin"
    bin_dir.mkdir()
    log.touch()
    for stub in stubs:
        write_stub(bin_dir, stub, log)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        **service_env(name),
        **extra,
    }
    result = subprocess.run(  # noqa: S603 - the repository's own script, stubbed tools
        [shell, flag, interpolate(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def option_values(argv: list[str], option: str) -> list[str]:
    """Every value given to ``option`` in ``argv``."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]


@pytest.fixture(scope="module")
def kafka_init(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    """The calls of the kafka-init script against stubbed Kafka tools."""
    root = tmp_path_factory.mktemp("kafka-init")
    tools = ["kafka-topics.sh", "kafka-acls.sh", "kafka-configs.sh"]
    return run_one_shot("kafka-init", root, tools, KAFKA_BIN=str(root / "bin"))


def compose_acls(calls: list[list[str]]) -> dict[str, set[tuple[str, str, str, frozenset[str]]]]:
    """The ACLs kafka-init adds, by principal, in the form of :func:`agency_acls`."""
    acls: dict[str, set[tuple[str, str, str, frozenset[str]]]] = {}
    for call in calls:
        if call[0] != "kafka-acls.sh" or "--add" not in call:
            continue
        (principal,) = option_values(call, "--allow-principal")
        pattern = (option_values(call, "--resource-pattern-type") or ["literal"])[0]
        operations = frozenset(o.lower() for o in option_values(call, "--operation"))
        # kafka-acls.sh's resource options, by the Strimzi resource type they mean.
        for option, kind in (
            ("topic", "topic"),
            ("group", "group"),
            ("transactional-id", "transactionalId"),
        ):
            for resource in option_values(call, f"--{option}"):
                entry = (kind, pattern.replace("prefixed", "prefix"), resource, operations)
                acls.setdefault(principal.removeprefix("User:"), set()).add(entry)
    return acls


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool binary; missing fails in CI and skips elsewhere."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus); CI runs this")
    return found


# --- every file parses ---------------------------------------------------------------------

DEPLOY_FILES = sorted(
    [COMPOSE, *(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml", ".json"})]
)


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=[str(p.relative_to(ROOT)) for p in DEPLOY_FILES])
def test_every_deployment_file_parses(path: Path) -> None:
    """Each YAML or JSON file under deploy/ and docker-compose.yml parses to a document."""
    text = path.read_text(encoding="utf-8")
    docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    assert [d for d in docs if d], f"{path} is empty"


# --- Prometheus ----------------------------------------------------------------------------


def test_promtool_accepts_the_config(promtool: str) -> None:
    """Prometheus's promtool accepts prometheus.yml and the rule files it loads."""
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules(promtool: str) -> None:
    """Prometheus's promtool accepts alerts.yml."""
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_for_the_right_series(promtool: str, tmp_path: Path) -> None:
    """Each alert expression, evaluated by promtool on made-up series, selects what it should."""
    rules = alert_rules()
    w1 = 'instance="worker-1:9464",job="xgw-gateway"'
    w2 = 'instance="worker-2:9464",job="xgw-gateway"'
    mon = f'instance="monitor:{MONITOR_PORT}",job="xgw-monitor"'
    series = {
        # police: 10 records/s, 3/s rejected. health: stops after 10 minutes. land: its
        # series vanishes after 10 minutes (the worker restarted). education: steady.
        f'xgw_messages_received_total{{agency="police",{w1}}}': "0+600x40",
        f'xgw_messages_rejected_total{{agency="police",reason="bad_signature",type="t",{w1}}}': (
            "0+180x40"
        ),
        f'xgw_messages_received_total{{agency="health",{w1}}}': "0+60x10 600x30",
        f'xgw_messages_received_total{{agency="land",{w2}}}': "0+60x10 _x30",
        f'xgw_messages_received_total{{agency="education",{w2}}}': "0+60x40",
        # police's events take 1-2.5 s, education's under 0.5 s.
        f'xgw_end_to_end_latency_seconds_bucket{{agency="police",le="0.5",{w1}}}': "0x40",
        f'xgw_end_to_end_latency_seconds_bucket{{agency="police",le="1",{w1}}}': "0x40",
        f'xgw_end_to_end_latency_seconds_bucket{{agency="police",le="2.5",{w1}}}': "0+60x40",
        f'xgw_end_to_end_latency_seconds_bucket{{agency="police",le="+Inf",{w1}}}': "0+60x40",
        f'xgw_end_to_end_latency_seconds_bucket{{agency="education",le="0.5",{w2}}}': "0+60x40",
        f'xgw_end_to_end_latency_seconds_bucket{{agency="education",le="+Inf",{w2}}}': "0+60x40",
        # police's ingress lag grows past 1000; land's is large but shrinking.
        f'xgw_consumer_lag_records{{topic="xgw.ingress.police",partition="0",{w1}}}': "0+100x40",
        f'xgw_consumer_lag_records{{topic="xgw.ingress.land",partition="1",{w2}}}': "9000-100x40",
        f"xgw_certificate_expiry_seconds{{{w1}}}": f"{10 * 86400}x40",
        f"up{{{w1}}}": "1x40",
        # one internal error from land after 25 minutes; none from police's rejections.
        f'xgw_messages_rejected_total{{agency="land",reason="internal_error",type="t",{w2}}}': (
            "0x25 1x15"
        ),
        f"up{{{w2}}}": "1x10 0x30",
        # The monitor raised bulk_lookup for land, rejection_spike for police, silence for
        # health and new_type for education within the last 10 minutes; health's
        # rejection_spike is 25 minutes old, and land's new_type counter only reset (the
        # monitor restarted). Nothing for police's bulk_lookup.
        f'xgw_monitor_alerts_total{{kind="bulk_lookup",agency="land",{mon}}}': "0x25 1x15",
        f'xgw_monitor_alerts_total{{kind="bulk_lookup",agency="police",{mon}}}': "0x40",
        f'xgw_monitor_alerts_total{{kind="rejection_spike",agency="police",{mon}}}': "0x22 1x18",
        f'xgw_monitor_alerts_total{{kind="rejection_spike",agency="health",{mon}}}': "0x5 1x35",
        f'xgw_monitor_alerts_total{{kind="silence",agency="health",{mon}}}': "0x28 1x12",
        f'xgw_monitor_alerts_total{{kind="new_type",agency="education",{mon}}}': "0x29 2x11",
        f'xgw_monitor_alerts_total{{kind="new_type",agency="land",{mon}}}': "3x20 0x20",
        # The monitor's audit partition 0 has been stuck for half an hour; partition 1 keeps
        # up; facts partition 2 was stuck for two minutes and moved again.
        f'xgw_monitor_stalled_seconds{{topic="xgw.audit",partition="0",{mon}}}': "0+60x40",
        f'xgw_monitor_stalled_seconds{{topic="xgw.audit",partition="1",{mon}}}': "0x40",
        f'xgw_monitor_stalled_seconds{{topic="xgw.monitor.facts",partition="2",{mon}}}': (
            "0+60x2 0x38"
        ),
        f"up{{{mon}}}": "1x20 0x20",
    }
    expected = {
        "XgwRejectionRatioHigh": ("agency", ['{agency="police"}']),
        "XgwNoTrafficFromAgency": ("agency", ['{agency="health"}', '{agency="land"}']),
        "XgwDeliveryLatencyHigh": ("agency", ['{agency="police"}']),
        "XgwConsumerLagGrowing": ("topic", ['{topic="xgw.ingress.police"}']),
        "XgwCertificateExpiringSoon": ("", ["{}"]),
        "XgwWorkerDown": ("instance", ['{instance="worker-2:9464"}']),
        "XgwInternalError": ("agency", ['{agency="land"}']),
        "XgwMonitorBulkLookup": ("agency", ['{agency="land"}']),
        "XgwMonitorRejectionSpike": ("agency", ['{agency="police"}']),
        "XgwMonitorSilence": ("agency", ['{agency="health"}']),
        "XgwMonitorNewType": ("agency", ['{agency="education"}']),
        "XgwMonitorStalled": ("topic, partition", ['{partition="0",topic="xgw.audit"}']),
        "XgwMonitorDown": ("instance", [f'{{instance="monitor:{MONITOR_PORT}"}}']),
    }
    assert set(expected) == set(rules)
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": [
                    {
                        "expr": f"group by ({by}) ({rules[name]['expr']})",
                        "eval_time": "30m",
                        "exp_samples": [{"labels": labels, "value": 1} for labels in fired],
                    }
                    for name, (by, fired) in expected.items()
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_monitor_alerts_wait_for_their_duration_and_resolve(promtool: str, tmp_path: Path) -> None:
    """Each monitor alert is pending, then firing after its for:, then resolved (promtool)."""
    mon = f'instance="monitor:{MONITOR_PORT}",job="xgw-monitor"'
    raised = "0x10 1x30"  # one alert raised at 11 minutes, none after
    # alert: (series, labels of the alert, severity, pending at, firing at, resolved at), minutes
    timeline: dict[str, tuple[dict[str, str], dict[str, str], str, int, int, int]] = {
        f"XgwMonitor{name}": (
            {f'xgw_monitor_alerts_total{{kind="{kind}",agency="{agency}",{mon}}}': raised},
            {"agency": agency},
            severity,
            11,
            12,
            21,
        )
        for name, kind, agency, severity in (
            ("BulkLookup", "bulk_lookup", "land", "critical"),
            ("RejectionSpike", "rejection_spike", "police", "warning"),
            ("Silence", "silence", "health", "warning"),
            ("NewType", "new_type", "education", "warning"),
        )
    }
    # stalled from 5 minutes on (more than 120 s at 8), moving again at 16
    stalled = 'xgw_monitor_stalled_seconds{topic="xgw.audit",partition="0",' + mon + "}"
    timeline["XgwMonitorStalled"] = (
        {stalled: "0x5 60+60x9 0x20"},
        {"topic": "xgw.audit", "partition": "0"},
        "critical",
        8,
        9,
        16,
    )
    # not scraped from 11 to 21 minutes
    timeline["XgwMonitorDown"] = (
        {f"up{{{mon}}}": "1x10 0x10 1x10"},
        {"instance": f"monitor:{MONITOR_PORT}", "job": "xgw-monitor"},
        "critical",
        11,
        13,
        22,
    )
    assert set(timeline) == {n for n in alert_rules() if n.startswith("XgwMonitor")}

    def alerts(name: str, state: str, labels: dict[str, str], severity: str) -> list[Any]:
        every = {**labels, "alertname": name, "alertstate": state, "severity": severity}
        pairs = ",".join(f'{k}="{v}"' for k, v in sorted(every.items()))
        return [{"labels": f"ALERTS{{{pairs}}}", "value": 1}]

    checks = []
    for name, (_, labels, severity, pending, firing, resolved) in timeline.items():
        for minute, samples in (
            (pending - 1, []),
            (pending, alerts(name, "pending", labels, severity)),
            (firing, alerts(name, "firing", labels, severity)),
            (resolved, []),
        ):
            expr = f'ALERTS{{alertname="{name}"}}'
            checks.append({"expr": expr, "eval_time": f"{minute}m", "exp_samples": samples})
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": s, "values": v}
                    for series, *_ in timeline.values()
                    for s, v in series.items()
                ],
                "promql_expr_test": checks,
            }
        ],
    }
    test_file = tmp_path / "monitor_alerts_test.yml"
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_severity_summary_description_and_duration() -> None:
    """Each alert carries a severity label, summary and description, and the agreed for:."""
    durations = {
        "XgwRejectionRatioHigh": "5m",
        "XgwNoTrafficFromAgency": "15m",
        "XgwDeliveryLatencyHigh": "10m",
        "XgwConsumerLagGrowing": "5m",
        "XgwCertificateExpiringSoon": "10m",
        "XgwWorkerDown": "2m",
        "XgwInternalError": "1m",
        "XgwMonitorBulkLookup": "1m",
        "XgwMonitorRejectionSpike": "1m",
        "XgwMonitorSilence": "1m",
        "XgwMonitorNewType": "1m",
        "XgwMonitorStalled": "1m",
        "XgwMonitorDown": "2m",
    }
    rules = alert_rules()
    assert {n: r.get("for") for n, r in rules.items()} == durations
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_alerts_and_dashboard_use_only_exposed_metrics() -> None:
    """Every xgw_* name in alert and dashboard expressions is one a worker serves."""
    exprs = [r["expr"] for r in alert_rules().values()] + dashboard_exprs()
    used = {name for expr in exprs for name in _XGW_METRIC.findall(expr)}
    assert used - exposed_metrics() - PENDING_METRICS == set()
    assert "xgw_messages_received_total" in exposed_metrics()  # the derivation itself works


def test_prometheus_scrapes_every_worker_and_the_monitor_and_nothing_else() -> None:
    """Jobs xgw-gateway and xgw-monitor scrape the workers and the monitor, nothing else."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = {t for c in jobs["xgw-gateway"]["static_configs"] for t in c["targets"]}
    assert targets == {f"{w}:{METRICS_PORT}" for w in services_running(["worker"])}
    monitors = services_running(["monitor"])
    targets = {t for c in jobs["xgw-monitor"]["static_configs"] for t in c["targets"]}
    assert targets == {f"{m}:{service_env(m)['XGW_MONITOR_PORT']}" for m in monitors}
    assert jobs["xgw-monitor"]["metrics_path"] == "/metrics"
    every_host = {
        t.split(":")[0] for j in jobs.values() for c in j["static_configs"] for t in c["targets"]
    }
    served = {*services_running(["worker"]), *monitors}
    assert every_host & (set(xgw_services()) - served) == set()
    assert config["rule_files"] == [ALERTS.name]
    assert 'up{job="xgw-gateway"}' in alert_rules()["XgwWorkerDown"]["expr"]
    assert 'up{job="xgw-monitor"}' in alert_rules()["XgwMonitorDown"]["expr"]


# --- Grafana -------------------------------------------------------------------------------


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    """The dashboard's datasource is the provisioned one, and the mounted folders line up."""
    (datasource,) = yaml.safe_load(GRAFANA_DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in services()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {
        item["datasource"]["uid"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"  # a row groups panels and queries nothing
        for item in [panel, *panel.get("targets", [])]
    }
    assert uids == {datasource["uid"]}
    (provider,) = yaml.safe_load(GRAFANA_DASHBOARDS.read_text(encoding="utf-8"))["providers"]
    mounts = dict(v.split(":")[:2] for v in services()["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_has_the_operations_panels() -> None:
    """The dashboard shows throughput, deliveries, rejections, latency, lag, certs, partitions."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = {p["title"] for p in dashboard["panels"]}
    assert titles >= {
        "Throughput per agency",
        "Deliveries per recipient",
        "Rejections by reason",
        "End-to-end latency p50 / p99",
        "Batch processing p99",
        "Consumer lag",
        "Certificate expiry",
        "Assigned partitions per worker",
    }
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_has_the_exchange_monitor_row() -> None:
    """Below a row "Exchange monitor": alerts by kind, rates, distinct subjects, lag, stalls."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    (row,) = (p for p in panels if p["type"] == "row" and p["title"] == "Exchange monitor")
    below = {p["title"]: p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]}
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in below.items()}
    wanted = {
        "Monitor alerts raised by kind": "xgw_monitor_alerts_total",
        "Monitor rate per agency": "xgw_monitor_rate_per_second",
        "Distinct subjects per requester (1m)": 'measure="distinct_subjects"',
        "Monitor lag": "xgw_monitor_lag_records",
        "Monitor stalled seconds": "xgw_monitor_stalled_seconds",
    }
    for title, needle in wanted.items():
        assert needle in exprs[title], title
    assert "by (kind)" in exprs["Monitor alerts raised by kind"]
    assert "measure" in exprs["Monitor rate per agency"].split("by (")[1].split(")")[0]
    assert 'window="1m"' in exprs["Distinct subjects per requester (1m)"]


# --- docker compose ------------------------------------------------------------------------


@pytest.mark.parametrize("name", xgw_services())
def test_compose_service_runs_an_xgw_command(name: str) -> None:
    """The service's command is an existing xgw command (``agency`` must exist too)."""
    argv = services()[name].get("command", ["worker"])
    assert resolve(argv) is not None, f"xgw {' '.join(argv)}: no such command"


def test_compose_runs_two_workers_the_audit_writer_and_every_agency() -> None:
    """Two workers, one audit writer and one mock agency per policy agency with its own user."""
    assert len(services_running(["worker"])) == 2
    assert len(services_running(["audit", "writer"])) == 1
    agencies = {
        services()[n]["command"][1]: n
        for n in xgw_services()
        if services()[n].get("command", [""])[0] == "agency"
    }
    assert set(agencies) == set(policy_agencies())
    for agency, name in agencies.items():
        assert service_env(name)["XGW_SASL_USERNAME"] == agency
    for name in [*services_running(["worker"]), *services_running(["audit", "writer"])]:
        assert service_env(name)["XGW_SASL_USERNAME"] == "gateway"


def test_compose_runs_one_monitor_like_the_workers() -> None:
    """One ``xgw monitor`` runs as the gateway, exactly once, probed and on the host loopback."""
    (name,) = services_running(["monitor"])
    service, env = services()[name], service_env(name)
    worker = service_env(services_running(["worker"])[0])
    for key in ("XGW_SASL_USERNAME", "XGW_SASL_PASSWORD", "XGW_PROCESSING_GUARANTEE"):
        assert env[key] == worker[key], key
    assert env["XGW_PROCESSING_GUARANTEE"] == "exactly_once"
    settings = settings_from({k: v for k, v in env.items() if k.startswith("XGW_")})
    assert settings.monitor_app_id == "xgw-monitor"
    assert settings.metrics_host == "0.0.0.0"  # noqa: S104 - a container must listen outside
    port = settings.monitor_port
    assert port == MONITOR_PORT
    assert service["ports"] == [f"127.0.0.1:1{port}:{port}"]
    assert f"http://127.0.0.1:{port}/metrics" in service["healthcheck"]["test"][-1]
    assert name in services()["prometheus"]["depends_on"]


def test_compose_broker_has_a_user_per_principal_and_an_authorizer(
    kafka_init: list[list[str]],
) -> None:
    """kafka-init makes a SCRAM user for the gateway and every agency; ACLs are enforced.

    The client listener's PLAIN users are the admin only, so no client can avoid SCRAM.
    """
    env = service_env("kafka")
    users = re.findall(
        r"\buser_([a-z0-9-]+)=", env["KAFKA_LISTENER_NAME_CLIENT_PLAIN_SASL_JAAS_CONFIG"]
    )
    assert users == ["admin"]
    scram = {
        option_values(c, "--entity-name")[0]: option_values(c, "--add-config")[0]
        for c in kafka_init
        if c[0] == "kafka-configs.sh"
    }
    assert set(scram) == {"gateway", *policy_agencies()}
    init_env = service_env("kafka-init")
    for user, config in scram.items():
        assert config.startswith("SCRAM-SHA-512=[")
        assert config.endswith(f"password={init_env[f'{user.upper()}_PASSWORD']}]")
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith(".StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert "broker,controller" in env["KAFKA_PROCESS_ROLES"]
    for name in xgw_services():
        settings = settings_from(
            {k: v for k, v in service_env(name).items() if k.startswith("XGW_")}
        )
        assert settings.bootstrap_servers == "kafka:9092"
        assert settings.security_protocol == "SASL_PLAINTEXT"
        assert settings.sasl_mechanism == "SCRAM-SHA-512"
        assert settings.sasl_mechanism in env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
        # Each client's password is the one kafka-init gave its SCRAM user.
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        assert password == service_env("kafka-init")[f"{settings.sasl_username}_PASSWORD".upper()]


def test_kafka_init_creates_exactly_the_exchange_topics(kafka_init: list[list[str]]) -> None:
    """kafka-init creates every topic of the exchange and the compacted changelog, 4 partitions."""
    creates = [c for c in kafka_init if c[0] == "kafka-topics.sh" and "--create" in c]
    topics = [option_values(c, "--topic")[0] for c in creates]
    assert sorted(topics) == sorted(exchange_topics())
    assert {option_values(c, "--partitions")[0] for c in creates} == {"4"}
    configs = {option_values(c, "--topic")[0]: option_values(c, "--config") for c in creates}
    assert configs[REPLAY_CHANGELOG] == ["cleanup.policy=compact"]


def test_kafka_init_gives_each_agency_only_its_own_topics(kafka_init: list[list[str]]) -> None:
    """Each agency may write its ingress and read its deliver and receipts topics, nothing else."""
    acls = compose_acls(kafka_init)
    for agency in policy_agencies():
        assert acls.get(agency) == agency_acls(agency), agency


def test_kafka_init_lets_the_gateway_use_all_its_topics_and_groups(
    kafka_init: list[list[str]],
) -> None:
    """The gateway's prefix ACLs cover every exchange topic and its groups, no agency group."""
    acls = compose_acls(kafka_init)["gateway"]
    settings = Settings()
    monitor = settings.monitor_app_id
    changelogs = {f"{monitor}-{table}-changelog" for table in MONITOR_TABLES}
    # faust's exactly-once transactional ids: <app id>-<topic group>-<partition>
    faust_transactional_id = f"{monitor}-0-0"
    for kind, names, needs in (
        ("topic", exchange_topics() | changelogs, "all"),
        ("group", {settings.app_id, settings.audit_group, monitor}, "all"),
        (
            "transactionalId",
            {transactional_id(settings.app_id, 0), faust_transactional_id},
            "write",
        ),
    ):
        for name in names:
            assert any(
                k == kind and p == "prefix" and name.startswith(n) and needs in ops
                for k, p, n, ops in acls
            ), (kind, name)
    assert not any(
        k == "group" and f"{a}-".startswith(n) for k, _, n, _ in acls for a in policy_agencies()
    )


def test_pki_init_enrols_every_agency(tmp_path: Path) -> None:
    """pki-init creates the CA, enrols each policy agency, and calls only real xgw commands."""
    calls = run_one_shot("pki-init", tmp_path, ["xgw"])
    for call in calls:
        assert resolve(call[1:]) is not None, f"xgw {' '.join(call[1:])}: no such command"
    assert calls[0] == ["xgw", "pki", "init"]
    enrolled = [c[3] for c in calls if c[1:3] == ["pki", "enroll"]]
    assert sorted(enrolled) == sorted(policy_agencies())
    assert service_env("pki-init")["XGW_PKI_DIR"] == "/var/lib/xgw/pki"


def test_every_xgw_service_shares_the_pki_volume() -> None:
    """pki-init writes the pki volume at XGW_PKI_DIR; every other xgw service reads it there."""
    for name in [*xgw_services(), "pki-init"]:
        pki_dir = service_env(name)["XGW_PKI_DIR"]
        assert any(v.split(":")[:2] == ["pki", pki_dir] for v in services()[name]["volumes"]), name


# --- settings everywhere -------------------------------------------------------------------


def test_every_xgw_variable_is_a_setting() -> None:
    """Each XGW_ name in compose, Dockerfile and Kubernetes files is a Settings field."""
    texts = [COMPOSE, DEPLOY / "Dockerfile", *K8S.glob("*.yaml")]
    used = {v for p in texts for v in _XGW_VARIABLE.findall(p.read_text(encoding="utf-8"))}
    unknown = {v for v in used if v.removeprefix("XGW_").lower() not in Settings.model_fields}
    assert unknown == set()
    assert "XGW_SASL_PASSWORD" in used


def test_every_xgw_environment_is_valid_settings(tmp_path: Path) -> None:
    """The XGW_ environment of each compose service and Kubernetes container validates.

    A CA file must exist for the settings to load: it must lie on one of the container's
    mounts, and a stand-in file takes its place here.
    """
    envs = [(service_env(n), None) for n in [*xgw_services(), "pki-init"]]
    envs += [(k8s_env(c), c) for c in k8s_containers()]
    stand_in = tmp_path / "ca.crt"
    stand_in.write_text("a CA file")
    for env, container in envs:
        xgw = {k: v for k, v in env.items() if k.startswith("XGW_")}
        if "XGW_SSL_CAFILE" in xgw:
            mounts = [m["mountPath"] for m in (container or {}).get("volumeMounts", [])]
            assert any(xgw["XGW_SSL_CAFILE"].startswith(m + "/") for m in mounts), xgw
            xgw["XGW_SSL_CAFILE"] = str(stand_in)
        settings_from(xgw)


# --- the image -----------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_worker_image() -> None:
    """python:3.11-slim, no dev extras, non-root, entry point xgw worker, /metrics on 9464."""
    lines = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    first = {i[0]: i[1] for i in reversed([i for i in instructions if len(i) == 2])}
    assert first["FROM"] == "python:3.11-slim"
    users = [i[1] for i in instructions if i[0] == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    assert json.loads(first["ENTRYPOINT"]) == ["xgw"]
    cmd = json.loads(first["CMD"])
    assert resolve(cmd) is cli.get_command(click.Context(cli), "worker")
    assert first["EXPOSE"] == str(METRICS_PORT)
    text = "\n".join(lines)
    assert "XGW_METRICS_HOST=0.0.0.0" in text
    assert "pip install ." in text
    assert "[dev]" not in text
    build = services()["pki-init"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


# --- Kubernetes ----------------------------------------------------------------------------


def test_strimzi_kafka_runs_kraft_with_scram_and_acls() -> None:
    """The Kafka resource uses KRaft node pools, SCRAM-SHA-512 clients and simple authorisation."""
    (kafka,) = k8s_kind("Kafka")
    (pool,) = k8s_kind("KafkaNodePool")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["authentication"]["type"] == "scram-sha-512"
    for container in k8s_containers():
        env = k8s_env(container)
        bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
        assert env["XGW_BOOTSTRAP_SERVERS"] == bootstrap
        assert env["XGW_SECURITY_PROTOCOL"] == ("SASL_SSL" if listener["tls"] else "SASL_PLAINTEXT")
        assert env["XGW_SASL_MECHANISM"] == "SCRAM-SHA-512"


def test_kafka_topics_are_exactly_the_exchange_topics() -> None:
    """One KafkaTopic per exchange topic and the changelog, 4 partitions and 3 replicas each."""
    (kafka,) = k8s_kind("Kafka")
    topics = k8s_kind("KafkaTopic")
    names = [t["spec"].get("topicName", t["metadata"]["name"]) for t in topics]
    assert sorted(names) == sorted(exchange_topics())
    for topic in topics:
        assert topic["spec"]["partitions"] == 4
        assert topic["spec"]["replicas"] == 3
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    (changelog,) = (t for t in topics if t["spec"].get("topicName") == REPLAY_CHANGELOG)
    assert changelog["spec"]["config"]["cleanup.policy"] == "compact"


def test_each_agency_user_may_use_only_its_own_topics() -> None:
    """Each agency's KafkaUser is SCRAM-SHA-512 with ACLs on exactly its own three topics."""
    for agency in policy_agencies():
        assert strimzi_acls(agency) == agency_acls(agency), agency


def test_the_gateway_user_has_the_same_acls_in_compose_and_strimzi(
    kafka_init: list[list[str]],
) -> None:
    """The gateway's ACLs (topics, groups, transactional ids) are one set in both files."""
    assert strimzi_acls("xgw-gateway") == compose_acls(kafka_init)["gateway"]


def strimzi_acls(user: str) -> set[tuple[str, str, str, frozenset[str]]]:
    """A SCRAM-SHA-512 KafkaUser's simple ACLs, in the form of :func:`agency_acls`."""
    (found,) = (u for u in k8s_kind("KafkaUser") if u["metadata"]["name"] == user)
    spec = found["spec"]
    assert spec["authentication"]["type"] == "scram-sha-512"
    assert spec["authorization"]["type"] == "simple"
    return {
        (
            acl["resource"]["type"],
            acl["resource"].get("patternType", "literal"),
            acl["resource"]["name"],
            frozenset(o.lower() for o in acl.get("operations", [acl.get("operation")])),
        )
        for acl in spec["authorization"]["acls"]
    }


def test_gateway_deployment_runs_two_probed_workers() -> None:
    """Two worker replicas, probed on /metrics at 9464, with resources and the gateway's user."""
    (gateway,) = (d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "xgw-gateway")
    assert gateway["spec"]["replicas"] == 2
    pod = gateway["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert resolve(container["args"]) is cli.get_command(click.Context(cli), "worker")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready, live = container["readinessProbe"], container["livenessProbe"]
    for probe in (ready, live):
        assert probe["httpGet"]["path"] == "/metrics"
        assert ports.get(probe["httpGet"]["port"], probe["httpGet"]["port"]) == METRICS_PORT
    assert live["periodSeconds"] > ready["periodSeconds"]
    assert {"requests", "limits"} <= set(container["resources"])
    env = k8s_env(container)
    assert env["XGW_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - a container must listen outside
    assert int(env["XGW_METRICS_PORT"]) == METRICS_PORT
    users = {u["metadata"]["name"] for u in k8s_kind("KafkaUser")}
    assert env["XGW_SASL_USERNAME"] in users
    (password,) = (e for e in container["env"] if e["name"] == "XGW_SASL_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == env["XGW_SASL_USERNAME"]
    (service,) = (s for s in k8s_kind("Service") if s["metadata"]["name"] == "xgw-gateway-metrics")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == METRICS_PORT
    assert ports.get(port["targetPort"], port["targetPort"]) == METRICS_PORT


def test_monitor_deployment_runs_the_monitor_exactly_once_as_the_gateway() -> None:
    """xgw-monitor runs as the gateway, exactly once, probed, with a Service and a faust dir."""
    (monitor,) = (d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "xgw-monitor")
    pod = monitor["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert resolve(container["args"]) is cli.get_command(click.Context(cli), "monitor")
    env = k8s_env(container)
    (gateway,) = (d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "xgw-gateway")
    (worker,) = gateway["spec"]["template"]["spec"]["containers"]
    for name in ("XGW_SASL_USERNAME", "XGW_PROCESSING_GUARANTEE", "XGW_BOOTSTRAP_SERVERS"):
        assert env[name] == k8s_env(worker)[name], name
    assert env["XGW_PROCESSING_GUARANTEE"] == "exactly_once"
    (password,) = (e for e in container["env"] if e["name"] == "XGW_SASL_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == env["XGW_SASL_USERNAME"]
    assert env["XGW_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - a container must listen outside
    port = int(env["XGW_MONITOR_PORT"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"]["path"] == "/metrics"
        assert ports.get(probe["httpGet"]["port"], probe["httpGet"]["port"]) == port
    assert {"requests", "limits"} <= set(container["resources"])
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    (service,) = (s for s in k8s_kind("Service") if s["metadata"]["name"] == "xgw-monitor-metrics")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port
    assert ports.get(service_port["targetPort"], service_port["targetPort"]) == port
    # faust makes <app id>-data under XGW_STATE_DIR (default: the system's /tmp) at start.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env.get("XGW_STATE_DIR", "/tmp") in mounts  # noqa: S108 - the image's temp dir


def test_every_kubernetes_container_runs_an_xgw_command() -> None:
    """The args of every Deployment's container name an existing xgw command."""
    for container in k8s_containers():
        assert resolve(container["args"]) is not None, container["args"]


def test_operations_guide_has_the_deployment_section() -> None:
    """docs/operations.md explains deploying on Apache Kafka, and deploy/k8s has its README."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "\n## Deploying on Apache Kafka\n" in text
    assert "partition" in (K8S / "README.md").read_text(encoding="utf-8")


def test_compose_k8s_and_the_apache_kafka_tests_run_one_kafka_version_and_mechanism() -> None:
    """The broker of the tests (tests/support/apache_kafka.py) is compose's and Strimzi's."""
    from tests.support.apache_kafka import VERSION  # noqa: PLC0415

    assert services()["kafka"]["image"] == f"apache/kafka:{VERSION}"
    assert services()["kafka-init"]["image"] == f"apache/kafka:{VERSION}"
    (kafka,) = k8s_kind("Kafka")
    assert kafka["spec"]["kafka"]["version"] == VERSION
    assert kafka["spec"]["kafka"]["metadataVersion"].startswith(VERSION.rsplit(".", 1)[0])
    for user in k8s_kind("KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert service_env("worker-1")["XGW_SASL_MECHANISM"] == "SCRAM-SHA-512"
