"""The exchange's topics as an AsyncAPI 3.0.0 document, built from the registry and the policy.

Operations are written from the side of the exchange's clients: each agency *sends* to its
ingress topic and *receives* from its delivery and receipt topics; operators receive dead
letters and the exchange monitor's alerts, the audit writer and the monitor receive audit
records, and the monitor its own facts. Every registered type is a message whose
payload is the CloudEvents envelope (structured JSON mode). On the wire ``data`` is the
*signed form* (salted digests only); the fields travel as disclosures, and once decoded they
form an object valid under the type's JSON Schema, which the message names in ``x-xgw-data``
(a recipient gets only the fields its policy grants: a subset of that object).

The module is pure: the caller passes agencies, routes and topic names (the CLI reads them
from the policy file and the settings).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from schemas.export import EVENT_TYPE, current_schemas, kind_of
from schemas.registry import SchemaRegistry

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
RECEIPT_TYPE = "vn.hcm.xgw.receipt.v1"
GATEWAY_SOURCE = "urn:hcm:xgw:gateway"
AGENCY_SOURCE_PREFIX = "urn:hcm:agency:"
_DEFS_REF = "#/$defs/"
_COMPONENT_REF = "#/components/schemas/"


class TopicNamer(Protocol):
    """The topic names of one exchange (``gateway.names.TopicNames`` fits)."""

    def ingress(self, agency: str) -> str: ...  # noqa: D102 - see TopicNames

    def deliver(self, agency: str) -> str: ...  # noqa: D102

    def receipts(self, agency: str) -> str: ...  # noqa: D102

    @property
    def deadletter(self) -> str: ...  # noqa: D102

    @property
    def audit(self) -> str: ...  # noqa: D102

    @property
    def checkpoints(self) -> str: ...  # noqa: D102

    @property
    def monitor_facts(self) -> str: ...  # noqa: D102

    @property
    def monitor_alerts(self) -> str: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class Route:
    """Which agencies publish a type and which may receive it."""

    publishers: tuple[str, ...]
    recipients: tuple[str, ...] = ()


def agency_of_type(event_type: str) -> str:
    """The agency named in ``vn.hcm.<agency>.<event>.v<major>``."""
    return event_type.split(".")[2]


def build_asyncapi(
    registry: SchemaRegistry,
    agencies: Sequence[str],
    routes: Mapping[str, Route],
    topics: TopicNamer,
    *,
    version: str,
    reason_codes: Sequence[str] = (),
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the exchange, as a JSON-ready dict.

    ``routes`` come from the policy: event routes, and for each request rule the request
    (requesters to answerer) and its response (answerer back to the requesters). A registered
    event type without a route is published by the agency its name carries and delivered to
    nobody (the gateway refuses it with ``no_recipients``). A request without a rule is
    shown as answered by the agency its name carries and sent by any other.
    """
    schemas = current_schemas(registry)
    components, data_refs = _component_schemas(schemas)
    flows = _flows(registry, routes, tuple(agencies))
    messages: dict[str, Any] = {
        event_type: _event_message(event_type, schema, flows[event_type], data_refs[event_type])
        for event_type, schema in schemas.items()
    }
    messages["receipt"] = _receipt_message(reason_codes)
    messages["deadLetter"] = _dead_letter_message(reason_codes)
    messages["auditRecord"] = _audit_message()
    messages["auditCheckpoint"] = _checkpoint_message()
    messages["monitorFact"] = _monitor_fact_message()
    messages["monitorAlert"] = _monitor_alert_message()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for agency in agencies:
        sent = [t for t in schemas if agency in flows[t].publishers]
        received = [t for t in schemas if agency in flows[t].recipients]
        _channel(channels, f"ingress.{agency}", topics.ingress(agency), sent, agency_doc(agency))
        _channel(channels, f"deliver.{agency}", topics.deliver(agency), received, "")
        _channel(channels, f"receipts.{agency}", topics.receipts(agency), ["receipt"], "")
        _operation(operations, f"{agency}.publish", "send", f"ingress.{agency}", sent)
        _operation(
            operations, f"{agency}.receiveDeliveries", "receive", f"deliver.{agency}", received
        )
        _operation(
            operations, f"{agency}.receiveReceipts", "receive", f"receipts.{agency}", ["receipt"]
        )
        _operation(
            operations,
            f"{agency}.receiveAuditCheckpoints",
            "receive",
            "auditCheckpoints",
            ["auditCheckpoint"],
        )
    _channel(channels, "deadletter", topics.deadletter, ["deadLetter"], "")
    _channel(channels, "audit", topics.audit, ["auditRecord"], "")
    _channel(
        channels,
        "auditCheckpoints",
        topics.checkpoints,
        ["auditCheckpoint"],
        "The audit writer's signed checkpoints; every agency reads and keeps them.",
    )
    _channel(
        channels,
        "monitorFacts",
        topics.monitor_facts,
        ["monitorFact"],
        "The exchange monitor's facts of each audit record, keyed by the agency each is about; "
        "the monitor writes and reads them itself.",
    )
    _channel(
        channels,
        "monitorAlerts",
        topics.monitor_alerts,
        ["monitorAlert"],
        "The exchange monitor's misuse alerts, keyed by agency; operators read them.",
    )
    _operation(operations, "operators.receiveDeadLetters", "receive", "deadletter", ["deadLetter"])
    _operation(operations, "auditWriter.receiveAuditRecords", "receive", "audit", ["auditRecord"])
    _operation(operations, "monitor.receiveAuditRecords", "receive", "audit", ["auditRecord"])
    _operation(operations, "monitor.receiveFacts", "receive", "monitorFacts", ["monitorFact"])
    _operation(
        operations, "operators.receiveMonitorAlerts", "receive", "monitorAlerts", ["monitorAlert"]
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "HCMC inter-agency exchange gateway",
            "version": version,
            "description": (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
    }


def agency_doc(agency: str) -> str:
    """The description of an agency's ingress channel."""
    return f"Signed CloudEvents written by {agency}; the record key is the event's subject."


def _flows(
    registry: SchemaRegistry, routes: Mapping[str, Route], agencies: tuple[str, ...]
) -> dict[str, Route]:
    flows = {}
    for event_type in registry.types():
        route = routes.get(event_type)
        if route is None:
            owner = agency_of_type(event_type)
            others = tuple(a for a in agencies if a != owner)
            kind = _kind(registry, event_type)
            if kind == "request":
                route = Route(others, (owner,))
            elif kind == "response":
                route = Route((owner,), others)
            else:
                route = Route((owner,))
        flows[event_type] = route
    return flows


def _kind(registry: SchemaRegistry, event_type: str) -> str:
    model = registry.model_for(event_type)
    return kind_of(model) if model is not None else "event"


def _channel(
    channels: dict[str, Any], key: str, address: str, messages: Sequence[str], doc: str
) -> None:
    channel: dict[str, Any] = {
        "address": address,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if doc:
        channel["description"] = doc
    channels[key] = channel


def _operation(
    operations: dict[str, Any], key: str, action: str, channel: str, messages: Sequence[str]
) -> None:
    operations[key] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }


def _rewrite_refs(node: Any, names: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                _COMPONENT_REF + names[v.removeprefix(_DEFS_REF)]
                if k == "$ref" and isinstance(v, str) and v.startswith(_DEFS_REF)
                else _rewrite_refs(v, names)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v, names) for v in node]
    return node


def _component_schemas(
    schemas: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each type's schema and its ``$defs`` as components; shared definitions appear once."""
    components: dict[str, Any] = {"SignedData": _SIGNED_DATA}
    data_refs = {}
    for event_type, schema in schemas.items():
        body = {k: copy.deepcopy(v) for k, v in schema.items() if k not in {"$schema", "$id"}}
        definitions: dict[str, Any] = body.pop("$defs", {})
        names = {}
        for name, definition in definitions.items():
            taken = components.get(name)
            names[name] = name if taken in (None, definition) else f"{event_type}.{name}"
        for name, definition in definitions.items():
            components[names[name]] = _rewrite_refs(definition, names)
        components[event_type] = _rewrite_refs(body, names)
        data_refs[event_type] = _COMPONENT_REF + event_type
    return components, data_refs


_SIGNED_DATA = {
    "type": "object",
    "description": "The signed form of the event's data: salted digests of the disclosures "
    "(RFC 9901 encoding), never the values themselves.",
    "required": ["_sd", "_sd_alg"],
    "additionalProperties": False,
    "properties": {
        "_sd": {"type": "array", "items": {"type": "string"}, "description": "sorted digests"},
        "_sd_alg": {"const": "sha-256"},
    },
}
_STRING = {"type": "string"}


def _envelope(event_type: str, sources: Sequence[str], *, signed: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1, "maxLength": 256},
        "source": {"enum": list(sources)} if sources else _STRING,
        "type": {"const": event_type},
        "subject": {
            "type": "string",
            "description": "sha256: + base64url(SHA-256('vn-person:' + personal id)); "
            "also the Kafka record key",
        },
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
    }
    if signed:
        properties |= {
            "data": {"$ref": _COMPONENT_REF + "SignedData"},
            "xgwsig": {**_STRING, "description": "the origin agency's detached JWS"},
            "xgwdisclosures": {**_STRING, "description": "disclosures joined by '~'"},
            "correlationid": {**_STRING, "description": "responses: the request's id"},
            "xgwdeadline": {
                "type": "string",
                "format": "date-time",
                "description": "requests: when an answer is no longer useful (signed)",
            },
            "xgwrecipient": {**_STRING, "description": "on delivery: the recipient agency"},
            "xgwpurpose": {**_STRING, "description": "on delivery: the granted purpose"},
            "xgwlegalbasis": {**_STRING, "description": "on delivery: the legal basis"},
            "xgwsignercert": {**_STRING, "description": "on delivery: base64 DER of the signer"},
        }
        required = ["data", "xgwsig", "xgwdisclosures"]
    else:
        required = ["data"]
    properties["xgwstamp"] = {**_STRING, "description": "on delivery: the gateway's detached JWS"}
    properties["xgwstampproof"] = {
        **_STRING,
        "description": "on delivery: <leaf index>.<tree size>.<audit path> (RFC 9162)",
    }
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", *required],
        "properties": properties,
        # Any other attribute is refused by the gateway (unknown_attribute), and the agency
        # client refuses a delivery that carries one: docs/envelope.md has the one list.
        "additionalProperties": False,
    }


def _kafka_key() -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": "the event's subject"},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _event_message(
    event_type: str, schema: Mapping[str, Any], route: Route, data_ref: str
) -> dict[str, Any]:
    if not EVENT_TYPE.fullmatch(event_type):
        raise ValueError(f"{event_type!r} is not vn.hcm.<agency>.<event>.v<major>")
    description = str(schema.get("description", "")).strip()
    delivered = ", ".join(route.recipients) or "nobody yet (no route in the policy)"
    sources = [AGENCY_SOURCE_PREFIX + p for p in route.publishers]
    message: dict[str, Any] = {
        "name": event_type,
        "title": str(schema.get("title", event_type)),
        "summary": description.split("\n")[0] if description else event_type,
        "description": f"Published by {', '.join(route.publishers) or 'nobody yet'}; "
        f"delivered to {delivered}. "
        "Payload: the CloudEvents envelope; the disclosed fields form an object valid under "
        f"x-xgw-data ({data_ref}).",
        "contentType": CLOUDEVENTS_CONTENT_TYPE,
        "payload": _envelope(event_type, sources, signed=True),
        "bindings": _kafka_key(),
        "x-xgw-kind": schema.get("x-xgw-kind", "event"),
        "x-xgw-data": {"$ref": data_ref},
    }
    if schema.get("x-xgw-kind") == "response":
        message["correlationId"] = {"location": "$message.payload#/correlationid"}
    return message


def _receipt_message(reason_codes: Sequence[str]) -> dict[str, Any]:
    reason: dict[str, Any] = {"type": "string"}
    if reason_codes:
        reason["enum"] = list(reason_codes)
    payload = _envelope(RECEIPT_TYPE, [GATEWAY_SOURCE], signed=False)
    payload["properties"]["subject"] = {
        "type": "string",
        "description": "the event's id, or 'record:' + record_sha256 when it has none; "
        "also the Kafka record key (without 'record:')",
    }
    payload["properties"]["xgwrecipient"] = {
        **_STRING,
        "description": "the agency the receipt is for, under the stamp",
    }
    payload["required"] += ["datacontenttype", "xgwrecipient", "xgwstamp", "xgwstampproof"]
    payload["properties"]["data"] = {
        "type": "object",
        "required": ["status", "event_id", "event_type", "recipients", "ingress", "record_sha256"],
        "properties": {
            "status": {"enum": ["accepted", "rejected", "timed_out"]},
            "event_id": {"type": ["string", "null"]},
            "event_type": {"type": ["string", "null"]},
            "recipients": {"type": "array", "items": _STRING},
            "ingress": {
                "type": "object",
                "required": ["topic", "partition", "offset"],
                "properties": {
                    "topic": _STRING,
                    "partition": {"type": "integer"},
                    "offset": {"type": "integer"},
                },
            },
            "record_sha256": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "SHA-256 of the record value bytes, lower-case hex",
            },
            "reason": reason,
            "detail": _STRING,
        },
    }
    return {
        "name": "receipt",
        "title": "Receipt",
        "summary": "Accepted or rejected, with a reason code, for each record an agency sent.",
        "contentType": CLOUDEVENTS_CONTENT_TYPE,
        "payload": payload,
        "bindings": _kafka_key(),
    }


def _dead_letter_message(reason_codes: Sequence[str]) -> dict[str, Any]:
    reason: dict[str, Any] = {"type": "string"}
    if reason_codes:
        reason["enum"] = list(reason_codes)
    headers = {
        "xgw-reason": reason,
        "xgw-detail": _STRING,
        "xgw-ingress-topic": _STRING,
        "xgw-ingress-partition": _STRING,
        "xgw-ingress-offset": _STRING,
        "xgw-decided-at": _STRING,
        "xgw-event-id": _STRING,
    }
    return {
        "name": "deadLetter",
        "title": "Dead letter",
        "summary": "A rejected record, key, value and headers untouched, plus xgw-* headers.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": [h for h in headers if h != "xgw-event-id"],
            "properties": headers,
        },
        "payload": {"description": "the rejected record's value, exactly as it arrived"},
    }


def _audit_message() -> dict[str, Any]:
    nullable = {"type": ["string", "null"]}
    return {
        "name": "auditRecord",
        "title": "Audit record",
        "summary": "One record per decision: ids, digests and outcome, never payload values.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "required": ["decision_id", "decided_at", "outcome", "record_sha256", "ingress"],
            "properties": {
                "decision_id": _STRING,
                "decided_at": {"type": "string", "format": "date-time"},
                "event_time": nullable,
                "outcome": {"enum": ["delivered", "rejected"]},
                "reason": nullable,
                "detail": _STRING,
                "agency": nullable,
                "event_id": nullable,
                "event_type": nullable,
                "subject": nullable,
                "signer_kid": nullable,
                "recipients": {"type": "array"},
                "event_sha256": nullable,
                "record_sha256": _STRING,
                "ingress": {"type": "object"},
            },
        },
    }


def _checkpoint_message() -> dict[str, Any]:
    hex_hash = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    seq = {"type": "integer", "minimum": 1}
    return {
        "name": "auditCheckpoint",
        "title": "Audit checkpoint",
        "summary": (
            "A signed checkpoint of the audit trail (entry, chain hash, RFC 9162 tree root) "
            "with a consistency proof from the checkpoint published before it."
        ),
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "version",
                "seq",
                "head",
                "root",
                "at",
                "signature",
                "certificate",
                "previous",
                "consistency",
            ],
            "properties": {
                "version": {"const": 1},
                "seq": seq,
                "head": hex_hash,
                "root": hex_hash,
                "at": {"type": "string", "format": "date-time"},
                "signature": {
                    "type": "string",
                    "description": "detached compact JWS (typ xgw-audit-checkpoint+jws) over "
                    'the JCS form of {"seq", "head", "root", "at"}',
                },
                "certificate": {"type": "string", "contentEncoding": "base64"},
                "previous": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["seq", "root"],
                            "properties": {"seq": seq, "root": hex_hash},
                        },
                    ]
                },
                "consistency": {"type": "array", "items": hex_hash, "maxItems": 128},
                "tst": {
                    "type": "string",
                    "contentEncoding": "base64",
                    "description": "optional: DER of an RFC 3161 time-stamp token over the "
                    "ASCII bytes of signature (SHA-256 messageImprint); absent when the "
                    "checkpoint has none (docs/audit.md)",
                },
            },
        },
    }


def _agency_key(description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": description},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _monitor_fact_message() -> dict[str, Any]:
    empty_or = "; empty on the other kinds"
    return {
        "name": "monitorFact",
        "title": "Monitor fact",
        "summary": "One countable fact of an audit record, about one agency (the monitor's own).",
        "description": "Each audit record becomes a decision fact of its source agency, a "
        "delivery fact per recipient and, for a request type, a request fact of the "
        "requester. A tick (no key, one per partition) carries only the decision time reached, "
        "so that windows close on quiet partitions too.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "kind",
                "agency",
                "type",
                "outcome",
                "reason",
                "purpose",
                "subject",
                "at",
            ],
            "properties": {
                "kind": {"enum": ["decision", "delivery", "request", "tick"]},
                "agency": {
                    **_STRING,
                    "description": "the agency the fact is about: the source of a decision, "
                    "the recipient of a delivery, the requester of a request",
                },
                "type": {**_STRING, "description": "the event type of the audit record"},
                "outcome": {**_STRING, "description": "decisions and requests" + empty_or},
                "reason": {**_STRING, "description": "decisions: the reason code" + empty_or},
                "purpose": {**_STRING, "description": "deliveries: the granted purpose" + empty_or},
                "subject": {
                    **_STRING,
                    "description": "requests: the pseudonymous subject digest the audit record "
                    "carries (the citizen asked about, never the personal id)" + empty_or,
                },
                "at": {"type": "number", "description": "the decision time, epoch seconds"},
            },
        },
        "bindings": _agency_key("the agency the fact is about (none on ticks)"),
    }


def _monitor_alert_message() -> dict[str, Any]:
    moment = {"type": "string", "format": "date-time"}
    count = {"type": "number", "minimum": 0}
    return {
        "name": "monitorAlert",
        "title": "Monitor alert",
        "summary": "A misuse alert of the exchange monitor: kind, agency, window and counts, "
        "no personal data.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "id",
                "kind",
                "agency",
                "type",
                "window_start",
                "window_end",
                "count",
                "baseline",
                "threshold",
                "raised_at",
            ],
            "properties": {
                "id": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{32}$",
                    "description": "derived from kind, agency, type and window: an alert "
                    "raised again (after a crash) has the same id",
                },
                "kind": {"enum": ["bulk_lookup", "rejection_spike", "silence", "new_type"]},
                "agency": _STRING,
                "type": {**_STRING, "description": "the event type, or '*' for all types"},
                "window_start": moment,
                "window_end": moment,
                "count": {
                    **count,
                    "description": "what the rule measured in the window: distinct subjects "
                    "(bulk_lookup), the rejection ratio (rejection_spike), records (silence: 0)",
                },
                "baseline": {**count, "description": "the same measure's usual value before"},
                "threshold": {
                    **count,
                    "description": "the value the count crossed (silence: seconds of silence)",
                },
                "raised_at": moment,
            },
        },
        "bindings": _agency_key("the agency the alert is about"),
    }
