"""Prometheus metrics of a gateway worker, and the HTTP endpoint that serves them.

Label values come from bounded sets only: configured agencies, registered types (anything else
is ``unknown``), and the ReasonCode enum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from gateway import __version__
from gateway.core.pipeline import Decision
from gateway.errors import ConfigError
from gateway.reasons import ReasonCode

UNKNOWN = "unknown"
# Rejections that a signature check itself produced (as opposed to checks before or after it).
_SIGNATURE_REASONS = frozenset(
    {
        ReasonCode.UNKNOWN_SIGNER,
        ReasonCode.UNTRUSTED_CERTIFICATE,
        ReasonCode.WRONG_KEY_USAGE,
        ReasonCode.CERTIFICATE_NOT_YET_VALID,
        ReasonCode.CERTIFICATE_EXPIRED,
        ReasonCode.REVOKED_CERTIFICATE,
        ReasonCode.SIGNER_AGENCY_MISMATCH,
        ReasonCode.BAD_SIGNATURE,
    }
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The worker's metrics, registered in their own registry."""

    def __init__(
        self, known_types: Iterable[str], registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._types = frozenset(known_types)
        r = self.registry
        self.received = Counter(
            "xgw_messages_received", "Ingress records read.", ["agency"], registry=r
        )
        self.delivered = Counter(
            "xgw_messages_delivered",
            "Deliveries written, per recipient.",
            ["agency", "recipient", "type"],
            registry=r,
        )
        self.rejected = Counter(
            "xgw_messages_rejected",
            "Ingress records rejected.",
            ["agency", "type", "reason"],
            registry=r,
        )
        self.receipts = Counter(
            "xgw_receipts", "Receipts written.", ["agency", "status"], registry=r
        )
        self.redeliveries = Counter(
            "xgw_redeliveries",
            "Records processed again after a restart before their offset was committed.",
            ["agency"],
            registry=r,
        )
        self.processing = Histogram(
            "xgw_batch_processing_seconds",
            "Time from taking a batch to the broker acknowledging all its outputs.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "xgw_batch_size_records",
            "Ingress records per processed batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.end_to_end = Histogram(
            "xgw_end_to_end_latency_seconds",
            "From the event's time attribute to the broker acknowledging its deliveries.",
            ["agency"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "xgw_assigned_partitions", "Ingress partitions assigned to this worker.", registry=r
        )
        self.output_retries = Counter(
            "xgw_output_retries", "Batches whose outputs had to be written again.", registry=r
        )
        self.crl_reloads = Counter(
            "xgw_crl_reloads", "Times a changed CRL was loaded without a restart.", registry=r
        )
        self.revoked_certificates = Gauge(
            "xgw_revoked_certificates", "Certificates revoked by the CRL in use.", registry=r
        )
        self.certificate_expiry = Gauge(
            "xgw_certificate_expiry_seconds",
            "Seconds until the first owner's newest certificate expires (negative: expired).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "xgw_consumer_lag_records",
            "Ingress records not yet read, per partition (wrong on the embedded broker).",
            ["topic", "partition"],
            registry=r,
        )
        self.signature_verifications = Counter(
            "xgw_signature_verifications",
            "Origin signatures checked, by result (ok, or the rejection reason).",
            ["result"],
            registry=r,
        )
        self.requests = Counter(
            "xgw_requests",
            "Request/reply outcomes per requester: asked (delivered to the answerer), answered "
            "(response delivered back), timed_out (no response by the deadline).",
            ["agency", "type", "outcome"],
            registry=r,
        )
        self.pending_requests = Gauge(
            "xgw_pending_requests", "Requests delivered and waiting for a response.", registry=r
        )
        self.known_certificates = Gauge(
            "xgw_known_certificates", "Certificates the trust store can look up.", registry=r
        )
        Info("xgw_build", "Gateway build information.", registry=r).info({"version": __version__})
        # Labelled children by metric and label values (bounded sets, see above): ``labels()``
        # takes a lock and builds a key on every call, several times per record.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[metric, labels] = metric.labels(*labels)
        return child

    def type_label(self, event_type: str | None) -> str:
        """The ``type`` label: a registered type, or ``unknown``."""
        return event_type if event_type in self._types else UNKNOWN

    def observe(self, decision: Decision, acked_at: float) -> None:
        """Count one decision whose outputs the broker acknowledged at ``acked_at`` (epoch s)."""
        agency = decision.agency or UNKNOWN
        type_label = self.type_label(decision.event_type)
        if decision.kind == "timeout":
            self._child(self.requests, agency, type_label, "timed_out").inc()
            return
        if decision.accepted and decision.kind == "request":
            self._child(self.requests, agency, type_label, "asked").inc()
        elif decision.accepted and decision.kind == "response":
            for requester in decision.recipients:
                self._child(self.requests, requester, type_label, "answered").inc()
        self._child(self.received, agency).inc()
        if decision.redelivery:
            self._child(self.redeliveries, agency).inc()
        if decision.reason in _SIGNATURE_REASONS:
            self._child(self.signature_verifications, decision.reason.value).inc()
        elif decision.signature_checked:
            self._child(self.signature_verifications, "ok").inc()
        if decision.accepted:
            for recipient in decision.recipients:
                self._child(self.delivered, agency, recipient, type_label).inc()
            if decision.event_time is not None:
                self._child(self.end_to_end, agency).observe(
                    max(0.0, acked_at - decision.event_time.timestamp())
                )
        else:
            assert decision.reason is not None  # noqa: S101 - a rejection always has a reason
            self._child(self.rejected, agency, type_label, decision.reason.value).inc()
        if decision.agency is not None:
            self._child(
                self.receipts, agency, "accepted" if decision.accepted else "rejected"
            ).inc()


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """The running HTTP endpoint."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        return f"http://{self.host}:{self.port}/metrics"


def serve_metrics(metrics: GatewayMetrics, host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` from a daemon thread; ``port=0`` picks a free port.

    A port in use or an address this machine does not have is a :class:`ConfigError` naming
    both and the settings to change (a second worker on one machine meets it first).
    """
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(
            f"cannot serve /metrics on {host}:{port}: {reason} "
            "(set XGW_METRICS_PORT, 0 for any free port, or XGW_METRICS_HOST)"
        ) from exc
    return MetricsServer(host, int(server.server_port))
