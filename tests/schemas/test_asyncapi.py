"""The AsyncAPI 3.0.0 document: valid against the official schema, and every reference resolves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft7Validator, Draft202012Validator

from gateway import names
from gateway.cli import cli
from gateway.core import records as outputs
from gateway.core.policy import load_policy
from gateway.monitor.facts import KINDS, TICK, Fact, facts_of
from gateway.monitor.rules import ALERT_KINDS, Alert
from gateway.names import TopicNames
from gateway.reasons import ReasonCode
from gateway.settings import DEFAULT_POLICY_FILE
from schemas import asyncapi
from schemas.police import ResidentRegistered
from schemas.registry import REGISTRY
from tests.schemas.test_export import RESIDENT

OFFICIAL_SCHEMA = Path(__file__).parent / "vendor" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["schemas", "asyncapi"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.output)
    return parsed


def _pointer(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_valid_against_the_official_asyncapi_3_schema(document: dict[str, Any]) -> None:
    """The document passes the official AsyncAPI 3.0.0 JSON Schema (vendored, offline)."""
    official = json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(Draft7Validator(official).iter_errors(document), key=str)
    assert errors == []
    assert not Draft7Validator(official).is_valid({**document, "asyncapi": "3.0.1"})


def test_structure(document: dict[str, Any]) -> None:
    """Version 3.0.0; operations name existing channels and messages of those channels."""
    assert document["asyncapi"] == "3.0.0"
    for name, operation in document["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        channel = _pointer(document, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            _pointer(document, message["$ref"])
    for ref in _refs(document):
        _pointer(document, ref)
    assert channel is not None


def test_a_channel_for_every_topic(document: dict[str, Any]) -> None:
    """Channels cover every topic of the exchange for the policy's agencies, and nothing else."""
    policy = load_policy(DEFAULT_POLICY_FILE, REGISTRY)
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == set(TopicNames("xgw").all_for(policy.agencies))
    for agency in policy.agencies:
        actions = {
            document["operations"][f"{agency}.{verb}"]["action"]
            for verb in ("publish", "receiveDeliveries", "receiveReceipts")
        }
        assert actions == {"send", "receive"}


def test_a_message_for_every_registered_type(document: dict[str, Any]) -> None:
    """Every registered type is a message, sent on some ingress channel, with its data schema."""
    messages = document["components"]["messages"]
    sent = {
        m["$ref"].rsplit("/", 1)[1]
        for name, op in document["operations"].items()
        if name.endswith(".publish")
        for m in op["messages"]
    }
    for event_type in REGISTRY.types():
        message = messages[event_type]
        assert message["payload"]["properties"]["type"] == {"const": event_type}
        assert _pointer(document, message["x-xgw-data"]["$ref"])["x-xgw-event-type"] == event_type
        assert event_type in sent


def test_routes_of_the_policy_become_deliveries(document: dict[str, Any]) -> None:
    """A type the policy routes to an agency is a message of that agency's delivery channel."""
    policy = load_policy(DEFAULT_POLICY_FILE, REGISTRY)
    for route in policy.routes:
        assert route.type in document["channels"][f"ingress.{route.publisher}"]["messages"]
        for grant in route.recipients:
            assert route.type in document["channels"][f"deliver.{grant.agency}"]["messages"]


def test_data_schema_in_the_document_validates_an_event(document: dict[str, Any]) -> None:
    """The component schema, with its hoisted definitions, accepts a valid event's data."""
    schema = {
        "$ref": f"#/components/schemas/{ResidentRegistered.event_type}",
        "components": document["components"],
    }
    validator = Draft202012Validator(schema)
    assert validator.is_valid(RESIDENT)
    assert not validator.is_valid({**RESIDENT, "extra": 1})
    assert not validator.is_valid({**RESIDENT, "permanent_address": {"commune_code": "1"}})


def test_constants_match_the_gateway() -> None:
    """The document's fixed names are the gateway's own."""
    assert asyncapi.RECEIPT_TYPE == outputs.RECEIPT_TYPE
    assert asyncapi.GATEWAY_SOURCE == names.GATEWAY_SOURCE
    assert asyncapi.AGENCY_SOURCE_PREFIX == names.SOURCE_PREFIX
    assert asyncapi.CLOUDEVENTS_CONTENT_TYPE.encode() == outputs.CLOUDEVENTS_CONTENT_TYPE


def test_monitor_facts_and_alerts_match_the_monitor(document: dict[str, Any]) -> None:
    """The monitor's facts (ticks too) and alerts, as it writes them, fit their messages."""
    facts = _payload_validator(document, "monitorFact")
    alerts = _payload_validator(document, "monitorAlert")
    audit = {
        "decided_at": "2025-01-02T03:04:05.678+00:00",
        "agency": "land",
        "event_type": "vn.hcm.police.identity_verification_requested.v1",
        "outcome": "delivered",
        "reason": None,
        "subject": "sha256:cGF0aWVudC1kaWdlc3Q",
        "recipients": [{"agency": "police", "purpose": "verify_owner"}],
    }
    written = facts_of(json.dumps(audit).encode(), frozenset({audit["event_type"]}))
    assert {f.kind for f in written} == set(KINDS)
    for fact in [*written, Fact(TICK, "", "", 1_735_787_045.5)]:
        assert [e.message for e in facts.iter_errors(fact.as_dict())] == [], fact.kind
    kinds = document["components"]["messages"]["monitorFact"]["payload"]["properties"]["kind"]
    assert kinds["enum"] == [*KINDS, TICK]
    for kind in ALERT_KINDS:
        alert = Alert(kind, "land", "*", 1_735_787_040, 1_735_787_100, 120, 10.5, 52.5, 1.7e9)
        assert [e.message for e in alerts.iter_errors(alert.as_record())] == [], kind
    payload = document["components"]["messages"]["monitorAlert"]["payload"]
    assert payload["properties"]["kind"]["enum"] == list(ALERT_KINDS)
    assert not alerts.is_valid({**alert.as_record(), "subject": "sha256:x"})


def test_reason_codes_are_listed(document: dict[str, Any]) -> None:
    """Receipts and dead letters list every reason code."""
    receipt = document["components"]["messages"]["receipt"]
    assert receipt["payload"]["properties"]["data"]["properties"]["reason"]["enum"] == [
        c.value for c in ReasonCode
    ]


def test_cli_writes_a_file(tmp_path: Path) -> None:
    """--out writes the document and says what it holds in one line."""
    out = tmp_path / "asyncapi.json"
    result = CliRunner().invoke(cli, ["schemas", "asyncapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote AsyncAPI 3.0.0 to {out}: ")
    assert json.loads(out.read_text(encoding="utf-8"))["asyncapi"] == "3.0.0"


def test_cli_bad_policy_is_one_line(tmp_path: Path) -> None:
    """A missing policy file is one readable error line, no traceback."""
    missing = tmp_path / "nope.toml"
    result = CliRunner().invoke(cli, ["schemas", "asyncapi", "--policy", str(missing)])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"xgw: error: cannot read policy file {missing}")


def test_requests_flow_as_the_policy_rules_say(document: dict[str, Any]) -> None:
    """Identity questions go from land and education to police; answers come back to them."""
    question = "vn.hcm.police.identity_verification_requested.v1"
    answer = "vn.hcm.police.identity_verified.v1"

    def names(operation: str) -> set[str]:
        return {m["$ref"].rsplit("/", 1)[-1] for m in document["operations"][operation]["messages"]}

    assert {
        a for a in ("police", "health", "education", "land") if question in names(f"{a}.publish")
    } == {
        "education",
        "land",
    }
    assert question in names("police.receiveDeliveries")
    assert answer in names("police.publish")
    assert answer in names("land.receiveDeliveries")
    assert answer not in names("health.receiveDeliveries")


VECTORS = Path(__file__).parents[1] / "vectors"


def _payload_validator(document: dict[str, Any], message: str) -> Draft202012Validator:
    payload = document["components"]["messages"][message]["payload"]
    return Draft202012Validator({**payload, "components": document["components"]})


def test_every_record_of_the_test_vectors_matches_its_message(document: dict[str, Any]) -> None:
    """Ingress events, deliveries and receipts, as the gateway wrote them, fit the document.

    The payload schemas allow no other attribute, so an attribute the document forgot (or one
    the gateway started to write) fails here.
    """
    manifest = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
    files = [entry["file"] for entry in manifest["ingress"]] + [
        case["file"] for case in manifest["cases"] if case["expect"] == "valid"
    ]
    kinds = set()
    for file in files:
        record = json.loads((VECTORS / file).read_text(encoding="utf-8"))
        receipt = record["type"] == asyncapi.RECEIPT_TYPE
        validator = _payload_validator(document, "receipt" if receipt else record["type"])
        errors = [e.message for e in validator.iter_errors(record)]
        assert errors == [], file
        kinds.add("receipt" if receipt else "xgwstamp" in record)
    assert kinds == {"receipt", True, False}  # receipts, deliveries and ingress events
    receipt = json.loads((VECTORS / "cases" / "receipt-accepted.json").read_text("utf-8"))
    assert not _payload_validator(document, "receipt").is_valid({**receipt, "xgwextra": "x"})
    assert not _payload_validator(document, "receipt").is_valid(
        {k: v for k, v in receipt.items() if k != "xgwrecipient"}
    )
