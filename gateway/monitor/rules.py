"""The misuse rules of the exchange monitor: when counts become an alert (no I/O here).

Each rule compares an agency's count in the current short window with its own baseline, the
mean over the ``baseline_windows`` short windows before it, and with a floor below which it
never alerts. docs/monitor.md explains each with its settings:

- ``bulk_lookup``: a requester asks about many more distinct citizens than its baseline (bulk
  look-ups of population data: an insider, or a stolen agency key harvesting Đề án 06 data);
- ``rejection_spike``: an agency's rejection ratio jumps above its baseline;
- ``silence``: an agency that published in each of the last windows has published nothing for
  ``silence_seconds`` while the rest of the exchange went on;
- ``new_type``: a recipient with a history receives a type it has never received.

An alert carries the agency, the type (or ``*``), the window and the counts, never personal
data; its id is derived from those, so a repeat after a crash is recognisable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.settings import Settings

__all__ = [
    "ALERT_KINDS",
    "BULK_LOOKUP",
    "NEW_TYPE",
    "REJECTION_SPIKE",
    "SILENCE",
    "Alert",
    "CommitWatch",
    "Thresholds",
    "baseline",
    "bulk_lookup",
    "rejection_spike",
    "silent",
]

BULK_LOOKUP = "bulk_lookup"
REJECTION_SPIKE = "rejection_spike"
SILENCE = "silence"
NEW_TYPE = "new_type"
ALERT_KINDS = (BULK_LOOKUP, REJECTION_SPIKE, SILENCE, NEW_TYPE)
# A spike is at least this far above the baseline ratio: an agency whose records are nearly all
# rejected by design (0.95) does not spike on a window where all of them were (1.0).
SPIKE_MARGIN = 0.2


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The rules' settings (``XGW_MONITOR_*``)."""

    short_s: float = 60.0
    baseline_windows: int = 10
    bulk_min_subjects: int = 50
    bulk_factor: float = 5.0
    reject_min_decisions: int = 20
    reject_ratio: float = 0.5
    reject_factor: float = 3.0
    silence_s: float = 300.0
    active_windows: int = 3
    learning_s: float = 3600.0

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        """The thresholds of ``settings``."""
        return cls(
            short_s=settings.monitor_short_window_seconds,
            baseline_windows=settings.monitor_baseline_windows,
            bulk_min_subjects=settings.monitor_bulk_min_subjects,
            bulk_factor=settings.monitor_bulk_factor,
            reject_min_decisions=settings.monitor_reject_min_decisions,
            reject_ratio=settings.monitor_reject_ratio,
            reject_factor=settings.monitor_reject_factor,
            silence_s=settings.monitor_silence_seconds,
            active_windows=settings.monitor_active_windows,
            learning_s=settings.monitor_learning_seconds,
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what, about whom, in which window, with the counts that raised it."""

    kind: str
    agency: str
    type: str
    window_start: float
    window_end: float
    count: float
    baseline: float
    threshold: float
    raised_at: float

    @property
    def id(self) -> str:
        """Derived from kind, agency, type and window: the same alert raised again has it too."""
        name = f"{self.kind}|{self.agency}|{self.type}|{self.window_start:.3f}"
        return hashlib.sha256(name.encode()).hexdigest()[:32]

    def as_record(self) -> dict[str, object]:
        """The JSON object on ``xgw.monitor.alerts``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "agency": self.agency,
            "type": self.type,
            "window_start": _rfc3339(self.window_start),
            "window_end": _rfc3339(self.window_end),
            "count": self.count,
            "baseline": round(self.baseline, 3),
            "threshold": round(self.threshold, 3),
            "raised_at": _rfc3339(self.raised_at),
        }


def baseline(history: Sequence[float]) -> float:
    """The mean of the earlier windows (0 with none)."""
    return sum(history) / len(history) if history else 0.0


def bulk_lookup(t: Thresholds, distinct: int, history: Sequence[int]) -> float | None:
    """The threshold ``distinct`` subjects crossed, or ``None`` (no alert)."""
    threshold = max(float(t.bulk_min_subjects), t.bulk_factor * baseline(history))
    return threshold if distinct > threshold else None


def rejection_spike(
    t: Thresholds, rejected: int, decided: int, history: Sequence[tuple[int, int]]
) -> tuple[float, float] | None:
    """(ratio, threshold) when the rejection ratio spiked, else ``None``.

    ``history`` holds (rejected, decided) of the earlier windows; their ratio is the baseline,
    and an agency with fewer than ``reject_min_decisions`` decisions in them has none yet.
    """
    earlier_decided = sum(d for _, d in history)
    if decided < t.reject_min_decisions or earlier_decided < t.reject_min_decisions:
        return None  # too few now, or no baseline yet to spike from
    usual = sum(r for r, _ in history) / earlier_decided
    threshold = max(t.reject_ratio, min(1.0, t.reject_factor * usual))
    ratio = rejected / decided
    # Rounded: in floating point 1.0 - 0.8 is just under 0.2, and the docs say "at least".
    spiked = ratio >= threshold and round(ratio - usual, 9) >= SPIKE_MARGIN
    return (ratio, threshold) if spiked else None


def silent(t: Thresholds, last_at: float, now: float, recent: Sequence[int]) -> bool:
    """An agency active in each of the ``recent`` windows before ``last_at``, quiet since."""
    active = len(recent) >= t.active_windows and all(n > 0 for n in recent)
    return active and now - last_at >= t.silence_s


@dataclass(frozen=True, slots=True)
class Watched:
    """One input partition of the monitor as the stall watch saw it."""

    topic: str
    partition: int
    committed: int
    lag: int
    stalled_seconds: float


@dataclass
class CommitWatch:
    """The stall rule: a committed offset that does not move while its partition has lag.

    Fed the committed offsets and the ends of the monitor's input partitions as read from the
    broker; a partition with no lag, or whose committed offset moved, starts again at 0.
    """

    stall_s: float
    _since: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    _reported: set[tuple[str, int]] = field(default_factory=set)  # stalled, already said

    def observe(
        self,
        committed: Mapping[tuple[str, int], int],
        ends: Mapping[tuple[str, int], int],
        now: float,
    ) -> tuple[list[Watched], list[Watched]]:
        """Every partition's state, and those just found still for ``stall_s`` (once each)."""
        rows, stalled_now = [], []
        for key, end in sorted(ends.items()):
            done = committed.get(key, 0)
            last, since = self._since.get(key, (-1, now))
            if done != last or done >= end:
                since = now
                self._reported.discard(key)
            self._since[key] = (done, since)
            # The embedded broker's read_committed end can trail a committed offset: no lag.
            lag = max(0, end - done)
            row = Watched(key[0], key[1], done, lag, now - since if lag else 0.0)
            if row.stalled_seconds >= self.stall_s and key not in self._reported:
                self._reported.add(key)
                stalled_now.append(row)
            rows.append(row)
        return rows, stalled_now


def _rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
