"""``xgw top``: a live view of running gateway workers, read from their ``/metrics`` endpoints.

Three layers. :func:`read` scrapes every endpoint once, and fetches the exchange monitors'
JSON views (``/monitor``) alongside (the only I/O). :func:`build_view` turns two successive
readings into rates, quantiles and rows; it is pure, so tests feed it sample dictionaries (the
monitors' part is :mod:`gateway.ops.top_monitor`). :func:`gateway.ops.top_render.render`
lays a :class:`View` out as rich tables.

Counters are differenced per endpoint and the differences summed, so a worker that stops or
restarts between two scrapes never shows up as a huge negative or positive rate. A monitor that
does not answer is noted in the view, never an error: the workers' view stands on its own.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException

from gateway.errors import XgwError
from gateway.ops.top_monitor import (
    MonitorEndpoint,
    MonitorJson,
    MonitorView,
    fetch_monitor,
    monitor_view,
)

Samples = Mapping[str, float]
Scrape = Callable[[str, float], Samples]
Fetch = Callable[[str, float], MonitorJson]

RECEIVED = "xgw_messages_received_total"
DELIVERED = "xgw_messages_delivered_total"
REJECTED = "xgw_messages_rejected_total"
END_TO_END = "xgw_end_to_end_latency_seconds"
BATCH = "xgw_batch_processing_seconds"
PARTITIONS = "xgw_assigned_partitions"
LAG = "xgw_consumer_lag_records"
CERT_EXPIRY = "xgw_certificate_expiry_seconds"
BUILD = "xgw_build_info"
# Samples that only grow (until a restart); only these are differenced between scrapes.
_MONOTONIC_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


# --- sample keys and sums ---------------------------------------------------------------------


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """Split a ``scrape`` key ``name{a=1,b=2}`` into the name and its labels."""
    name, _, rest = key.partition("{")
    labels: dict[str, str] = {}
    for pair in rest.removesuffix("}").split(","):
        if pair:
            label, _, value = pair.partition("=")
            labels[label] = value
    return name, labels


def sum_by(samples: Samples, name: str, label: str | None = None) -> dict[str, float]:
    """Sum the samples of metric ``name`` grouped by one label (all under ``""`` if none)."""
    sums: dict[str, float] = defaultdict(float)
    for key, value in samples.items():
        sample_name, labels = parse_key(key)
        if sample_name == name:
            sums[labels.get(label, "") if label else ""] += value
    return dict(sums)


def increase(before: Samples, after: Samples) -> dict[str, float]:
    """The growth of each monotonic sample between two scrapes of one endpoint.

    A sample that went down means the worker restarted; its growth is then its new value, as
    Prometheus ``increase()`` counts it. Samples new in ``after`` grew from zero.
    """
    grown: dict[str, float] = {}
    for key, now in after.items():
        if not parse_key(key)[0].endswith(_MONOTONIC_SUFFIXES):
            continue
        then = before.get(key, 0.0)
        grown[key] = now - then if now >= then else now
    return grown


def histogram_buckets(
    samples: Samples, name: str, match: Mapping[str, str] | None = None
) -> list[tuple[float, float]]:
    """The cumulative ``(upper bound, count)`` buckets of histogram ``name``, sorted by bound.

    Series whose labels agree with ``match`` are added together, like ``sum by (le)``.
    """
    counts: dict[float, float] = defaultdict(float)
    for key, value in samples.items():
        sample_name, labels = parse_key(key)
        if sample_name != f"{name}_bucket" or "le" not in labels:
            continue
        if match and any(labels.get(k) != v for k, v in match.items()):
            continue
        counts[float(labels["le"])] += value
    return sorted(counts.items())


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative buckets, interpolated like Prometheus does.

    ``None`` when there are no observations. The lowest bucket starts at 0; a rank that falls
    into the ``+Inf`` bucket yields the highest finite bound.
    """
    if not buckets or not math.isinf(buckets[-1][0]) or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if count >= rank:
            if math.isinf(upper_bound):
                return buckets[-2][0] if len(buckets) > 1 else None
            if count == lower_count:
                return upper_bound
            if upper_bound <= 0:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = upper_bound, count
    return None  # unreachable with a consistent +Inf bucket


# --- readings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint's scrape: its samples, or ``None`` and why it is down."""

    url: str
    samples: Samples | None
    error: str = ""

    @property
    def up(self) -> bool:
        """Whether the scrape succeeded."""
        return self.samples is not None


@dataclass(frozen=True, slots=True)
class Reading:
    """One scrape of every endpoint, taken at ``at`` (monotonic seconds)."""

    at: float
    endpoints: tuple[Endpoint, ...]
    monitors: tuple[MonitorEndpoint, ...] = ()

    @property
    def any_up(self) -> bool:
        """Whether at least one endpoint answered."""
        return any(e.up for e in self.endpoints)

    def total(self) -> dict[str, float]:
        """Every sample summed over the endpoints that answered."""
        summed: dict[str, float] = defaultdict(float)
        for endpoint in self.endpoints:
            for key, value in (endpoint.samples or {}).items():
                summed[key] += value
        return dict(summed)


def window_increase(before: Reading, after: Reading) -> dict[str, float]:
    """Growth of every monotonic sample between two readings, summed over endpoints up in both."""
    earlier = {e.url: e.samples for e in before.endpoints if e.samples is not None}
    summed: dict[str, float] = defaultdict(float)
    for endpoint in after.endpoints:
        then = earlier.get(endpoint.url)
        if endpoint.samples is None or then is None:
            continue
        for key, value in increase(then, endpoint.samples).items():
            summed[key] += value
    return dict(summed)


def _why(exc: BaseException) -> str:
    cause = getattr(exc, "reason", None) or exc  # URLError wraps the socket error
    return str(getattr(cause, "strerror", None) or str(cause) or type(cause).__name__)


def read(
    urls: Sequence[str],
    scrape: Scrape,
    timeout: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    monitors: Sequence[str] = (),
    fetch: Fetch = fetch_monitor,
) -> Reading:
    """Scrape every URL and fetch every monitor in parallel; what fails is recorded as down."""

    def one(url: str) -> Endpoint:
        try:
            return Endpoint(url, scrape(url, timeout))
        except (OSError, ValueError, HTTPException) as exc:  # URLError is an OSError
            return Endpoint(url, None, _why(exc))

    def monitor(url: str) -> MonitorEndpoint:
        try:
            answer = MonitorEndpoint(url, fetch(url, timeout))
        except (OSError, ValueError, HTTPException) as exc:  # a JSONDecodeError is a ValueError
            return MonitorEndpoint(url, None, _why(exc))
        try:
            monitor_view((answer,))  # hand on only what the pure layer can read
        except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError):
            return MonitorEndpoint(url, None, "not a monitor view")  # a worker, another service
        return answer

    with ThreadPoolExecutor(max_workers=min(len(urls) + len(monitors), 16) or 1) as pool:
        views = [pool.submit(monitor, url) for url in monitors]
        endpoints = tuple(pool.map(one, urls))
        answers = tuple(v.result() for v in views)
    return Reading(clock(), endpoints, answers)


# --- the view ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgencyRow:
    """Throughput and latency of one publishing agency; rates are ``None`` before two scrapes."""

    agency: str
    received_per_s: float | None
    delivered_per_s: float | None
    rejected_per_s: float | None
    latency_p50: float | None
    latency_p99: float | None


@dataclass(frozen=True, slots=True)
class ReasonRow:
    """Rejections with one reason code: the total since the workers started, and the rate."""

    reason: str
    total: float
    per_s: float | None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One endpoint: up or down, partitions and build version."""

    url: str
    up: bool
    partitions: int | None
    version: str | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class LagRow:
    """Consumer lag of one ingress partition."""

    topic: str
    partition: int
    records: float


@dataclass(frozen=True, slots=True)
class View:
    """Everything ``xgw top`` shows, computed from one or two readings."""

    workers: tuple[WorkerRow, ...]
    agencies: tuple[AgencyRow, ...]
    reasons: tuple[ReasonRow, ...]
    window_s: float | None
    latency_scope: str
    batch_p99: float | None
    lag: tuple[LagRow, ...] | None
    certificate_expiry_s: float | None
    versions: tuple[str, ...] = field(default=())
    monitor: MonitorView | None = None  # None: no monitor asked for

    @property
    def up(self) -> int:
        """How many endpoints answered."""
        return sum(1 for w in self.workers if w.up)


def _rates(grown: Samples | None, name: str, label: str, seconds: float) -> dict[str, float] | None:
    """Per-second growth of metric ``name`` by ``label``; ``None`` without a window."""
    if grown is None:
        return None
    return {k: v / seconds for k, v in sum_by(grown, name, label).items()}


def _get(rates: Mapping[str, float] | None, key: str) -> float | None:
    return None if rates is None else rates.get(key, 0.0)


def _worker_rows(reading: Reading) -> tuple[WorkerRow, ...]:
    rows = []
    for endpoint in reading.endpoints:
        if endpoint.samples is None:
            rows.append(WorkerRow(endpoint.url, False, None, None, endpoint.error))
            continue
        partitions = sum_by(endpoint.samples, PARTITIONS).get("")
        versions = sorted(sum_by(endpoint.samples, BUILD, "version"))
        rows.append(
            WorkerRow(
                endpoint.url,
                True,
                None if partitions is None else int(partitions),
                versions[0] if versions else None,
            )
        )
    return tuple(rows)


def _lag_rows(reading: Reading) -> tuple[LagRow, ...] | None:
    # A partition moved by a rebalance can still be reported by its previous owner for a
    # moment; the larger figure is the safer one to show.
    lag: dict[tuple[str, int], float] = {}
    seen = False
    for endpoint in reading.endpoints:
        for key, value in (endpoint.samples or {}).items():
            name, labels = parse_key(key)
            if name != LAG:
                continue
            seen = True
            try:
                where = (labels.get("topic", "?"), int(labels.get("partition", "-1")))
            except ValueError:
                continue
            lag[where] = max(value, lag.get(where, value))
    if not seen:
        return None
    return tuple(LagRow(t, p, v) for (t, p), v in sorted(lag.items()))


def build_view(before: Reading | None, after: Reading) -> View:
    """Rates, quantiles and rows from the previous reading (if any) and the latest one."""
    total = after.total()
    seconds = after.at - before.at if before is not None else 0.0
    grown = window_increase(before, after) if before is not None and seconds > 0 else None
    # Quantiles cover the last interval when it saw observations, otherwise the time since
    # the workers started (a single scrape, or an idle interval).
    latency_source: Samples = total
    latency_scope = "since start"
    if grown is not None and sum_by(grown, f"{END_TO_END}_count").get("", 0.0) > 0:
        latency_source, latency_scope = grown, f"last {seconds:.1f}s"
    batch_source: Samples = total
    if grown is not None and sum_by(grown, f"{BATCH}_count").get("", 0.0) > 0:
        batch_source = grown

    received = _rates(grown, RECEIVED, "agency", seconds)
    delivered = _rates(grown, DELIVERED, "agency", seconds)
    rejected = _rates(grown, REJECTED, "agency", seconds)
    agencies = sorted(
        set(sum_by(total, RECEIVED, "agency"))
        | set(sum_by(total, DELIVERED, "agency"))
        | set(sum_by(total, REJECTED, "agency"))
    )
    agency_rows = []
    for agency in agencies:
        latency = histogram_buckets(latency_source, END_TO_END, {"agency": agency})
        agency_rows.append(
            AgencyRow(
                agency,
                _get(received, agency),
                _get(delivered, agency),
                _get(rejected, agency),
                histogram_quantile(0.5, latency),
                histogram_quantile(0.99, latency),
            )
        )

    reason_rates = _rates(grown, REJECTED, "reason", seconds)
    reason_rows = tuple(
        ReasonRow(reason, count, _get(reason_rates, reason))
        for reason, count in sorted(
            sum_by(total, REJECTED, "reason").items(), key=lambda item: (-item[1], item[0])
        )
        if count > 0
    )

    expiries = [
        value
        for endpoint in after.endpoints
        for key, value in (endpoint.samples or {}).items()
        if parse_key(key)[0] == CERT_EXPIRY
    ]
    workers = _worker_rows(after)
    return View(
        workers=workers,
        agencies=tuple(agency_rows),
        reasons=reason_rows,
        window_s=seconds if grown is not None else None,
        latency_scope=latency_scope,
        batch_p99=histogram_quantile(0.99, histogram_buckets(batch_source, BATCH)),
        lag=_lag_rows(after),
        certificate_expiry_s=min(expiries) if expiries else None,
        versions=tuple(sorted({w.version for w in workers if w.version})),
        monitor=monitor_view(after.monitors) if after.monitors else None,
    )


# --- the one-shot view ------------------------------------------------------------------------


def _down_summary(reading: Reading) -> str:
    return ", ".join(f"{e.url} ({e.error})" for e in reading.endpoints)


def snapshot(
    urls: Sequence[str],
    interval: float,
    scrape: Scrape,
    monitors: Sequence[str] = (),
    fetch: Fetch = fetch_monitor,
) -> View:
    """Scrape twice, ``interval`` apart, and return the view; raise if no worker answers.

    The monitors are asked with the second scrape: the view shows only that one.
    """
    timeout = scrape_timeout(interval)
    first = read(urls, scrape, timeout)
    if not first.any_up:
        raise XgwError(f"no gateway worker answered: {_down_summary(first)}")
    time.sleep(interval)
    return build_view(first, read(urls, scrape, timeout, monitors=monitors, fetch=fetch))


def scrape_timeout(interval: float) -> float:
    """The scrape timeout for a refresh ``interval``."""
    # A silent endpoint must not stretch the refresh much beyond the interval.
    return min(2.0, max(0.2, interval))
