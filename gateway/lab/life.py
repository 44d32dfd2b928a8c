"""The demo's life events: four mock agencies play births, deaths, land transfers and admissions.

Their records share the agencies' topics with the demo's stream; the ids their clients write say
which deliveries and receipts belong to the stories. Each play is checked against the deliveries
the policy implies, and the tally becomes the ``life_events`` part of the demo's summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from connectors.client import AgencyClient, PublishedEvent, Receipt, ReceivedEvent
from connectors.mock.lifeevents import (
    CONNECTORS,
    STORIES,
    LifeEvents,
    MockAgencies,
    MockAgency,
    Story,
    react_forever,
)
from connectors.mock.people import local_day
from connectors.transport import Headers, Message, Transport
from gateway.core.policy import Policy
from schemas.base import RequestModel, ResponseModel
from schemas.registry import REGISTRY

STORY_ROUNDS = 3  # each life event is played this many times
STORY_WAIT_S = 15.0  # longest wait for one story's deliveries (a request may wait 10 s)


@dataclass
class StoryStats:
    """How the plays of one kind of life event went."""

    played: int = 0
    complete: int = 0  # plays whose deliveries were exactly those the policy implies
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    answered: int = 0
    timed_out: int = 0
    deliveries: Counter[str] = field(default_factory=Counter)  # per recipient
    expected: Counter[str] = field(default_factory=Counter)  # per recipient, from the policy

    def add(
        self, outcome: str, expected: Counter[tuple[str, str]], seen: Counter[tuple[str, str]]
    ) -> None:
        """Count one play: its outcome, and the (recipient, type) deliveries expected and seen."""
        self.played += 1
        self.complete += seen == expected
        self.outcomes[outcome] += 1
        self.requests += sum(n for (_, t), n in expected.items() if _is(t, RequestModel))
        self.answered += sum(n for (_, t), n in seen.items() if _is(t, ResponseModel))
        self.timed_out += outcome == "no_answer"
        for (recipient, _), n in expected.items():
            self.expected[recipient] += n
        for (recipient, _), n in seen.items():
            self.deliveries[recipient] += n

    def as_dict(self) -> dict[str, Any]:
        """The story's part of the JSON summary."""
        return {
            "played": self.played,
            "complete": self.complete,
            "outcomes": dict(sorted(self.outcomes.items())),
            "requests": self.requests,
            "answered": self.answered,
            "timed_out": self.timed_out,
            "deliveries": dict(sorted(self.deliveries.items())),
            "expected_deliveries": dict(sorted(self.expected.items())),
        }


def _is(event_type: str, kind: type[RequestModel] | type[ResponseModel]) -> bool:
    model = REGISTRY.model_for(event_type)
    return model is not None and issubclass(model, kind)


@dataclass
class LifeSummary:
    """The life events played across the four agencies, and the records they wrote."""

    stories: dict[Story, StoryStats] = field(
        default_factory=lambda: {story: StoryStats() for story in STORIES}
    )
    records: int = 0  # everything the four mock agencies wrote: events, requests, answers
    receipts: int = 0  # accepted or rejected receipts for those records
    rejected: Counter[str] = field(default_factory=Counter)
    timeout_receipts: int = 0

    @property
    def decisions(self) -> int:
        """Gateway decisions the life events caused: one per record, one per timed-out request."""
        return self.records + self.timeout_receipts

    @property
    def ok(self) -> bool:
        """Every play complete, every record accepted with a receipt."""
        return (
            all(s.complete == s.played for s in self.stories.values())
            and self.receipts == self.records
            and not self.rejected
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``life_events`` part of the JSON summary."""
        return {
            "stories": {story: stats.as_dict() for story, stats in self.stories.items()},
            "records": self.records,
            "receipts": self.receipts,
            "rejected": dict(sorted(self.rejected.items())),
            "timeout_receipts": self.timeout_receipts,
            "ok": self.ok,
        }


class Stream(Protocol):
    """Where the deliveries and receipts that are not the life events' go."""

    def delivery(self, agency: str, event: ReceivedEvent) -> None:
        """Count one delivery of the stream's."""

    def receipt(self, receipt: Receipt) -> None:
        """Count one receipt for a record of the stream's."""


class NotingTransport:
    """A transport that notes the id of every event its client writes, before writing it.

    The stream and the life events share the agencies' topics; the ids say which of the two a
    delivery or receipt belongs to, with no race against the gateway's answer.
    """

    def __init__(self, inner: Transport, ids: set[str]) -> None:
        self._inner = inner
        self._ids = ids
        self.sent = 0

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Note the event's id, then write it."""
        event_id = json.loads(value).get("id")  # the client writes CloudEvents only
        if isinstance(event_id, str):
            self._ids.add(event_id)
        await self._inner.send(topic, value, key=key, headers=headers)
        self.sent += 1

    def consume(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        ready: asyncio.Event | None = None,
        from_end: bool = False,
    ) -> AsyncIterator[Message]:
        """The inner transport's records."""
        return self._inner.consume(topics, group=group, ready=ready, from_end=from_end)

    async def close(self) -> None:
        """Close the inner transport."""
        await self._inner.close()


class Life:
    """The life events: four mock agencies, the stories, what was delivered and receipted."""

    def __init__(
        self,
        agencies: MockAgencies,
        transports: Iterable[NotingTransport],
        ids: set[str],
        policy: Policy,
        rng: random.Random,
    ) -> None:
        self.agencies = agencies
        self.ids = ids
        self._stories = LifeEvents(agencies, rng)
        self._transports = list(transports)
        self._policy = policy
        self._seen: list[tuple[str, str]] = []  # (recipient, type), in arrival order
        self._receipts: dict[str, Receipt] = {}
        self._stats = {story: StoryStats() for story in STORIES}
        self.changed = asyncio.Event()

    def delivered(self, agency: str, event: ReceivedEvent) -> None:
        """Note one delivery of a life event's record."""
        self._seen.append((agency, event.type))
        self.changed.set()

    def receipt(self, receipt: Receipt) -> None:
        """Note the receipt for a record the life events wrote."""
        self._receipts[receipt.id] = receipt
        self.changed.set()

    async def play(self, rounds: int, console: Console) -> None:
        """Play every story ``rounds`` times, one at a time, each until its deliveries arrived."""
        for _ in range(rounds):
            for story in STORIES:
                await self._play(story, console)

    async def _play(self, story: Story, console: Console) -> None:
        start = len(self._seen)
        played = await self._stories.play(story, local_day(datetime.now(UTC)))
        expected = Counter(played.expected_deliveries(self._policy))
        await _until(self.changed, lambda: Counter(self._seen[start:]) >= expected, STORY_WAIT_S)
        seen = Counter(self._seen[start:])
        self._stats[story].add(played.outcome, expected, seen)
        colour = "green" if seen == expected else "red"
        console.print(
            f"[{colour}]life[/] {story.replace('_', ' ')}: {played.outcome}, "
            f"{seen.total()} of {expected.total()} expected deliveries"
        )

    def _decided(self) -> int:
        return sum(r.status != "timed_out" for r in self._receipts.values())

    async def settle(self, limit_s: float) -> None:
        """Wait (bounded) until every record written has its receipt."""
        records = sum(t.sent for t in self._transports)
        await _until(self.changed, lambda: self._decided() >= records, limit_s)

    def summary(self) -> LifeSummary:
        """What the stories did, and the receipts for what they wrote."""
        done = LifeSummary(
            stories=self._stats,
            records=sum(t.sent for t in self._transports),
            receipts=self._decided(),
        )
        for receipt in self._receipts.values():
            if receipt.status == "timed_out":
                done.timeout_receipts += 1
            elif not receipt.accepted:
                done.rejected[receipt.reason or "unknown"] += 1
        return done


def build_life(
    client: Callable[[str, Transport], AgencyClient],
    transport: Callable[[], Transport],
    policy: Policy,
    seed: int,
) -> Life:
    """The four mock agencies, each client writing through a transport that notes its ids."""
    ids: set[str] = set()
    noting = {a: NotingTransport(transport(), ids) for a in CONNECTORS}
    rng = random.Random(seed)  # noqa: S311 - fake data, not secrets
    return Life(
        MockAgencies.build({a: client(a, t) for a, t in noting.items()}, rng),
        noting.values(),
        ids,
        policy,
        rng,
    )


@dataclass(frozen=True)
class _Subscription:
    """One agency's deliveries: the life events' go to its mock connector, the stream's are counted.

    The stream's people are not in the mock agencies' registers; reacting to them would write
    records that no story accounts for.
    """

    connector: MockAgency
    life: Life
    stream: Stream

    @property
    def agency(self) -> str:
        return self.connector.agency

    @property
    def client(self) -> AgencyClient:
        return self.connector.client

    async def publish_next(self, today: date) -> PublishedEvent | None:
        return await self.connector.publish_next(today)

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        if delivery.id not in self.life.ids:
            self.stream.delivery(self.agency, delivery)
            return []
        self.life.delivered(self.agency, delivery)
        return await self.connector.handle(delivery)


async def _until(changed: asyncio.Event, done: Callable[[], bool], limit_s: float) -> bool:
    """Wait until ``done()`` (re-checked when ``changed`` is set), at most ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(left, 0.2))
    return True


def listen(
    stream: Stream, life: Life, run_id: str
) -> tuple[list[asyncio.Task[None]], list[asyncio.Event]]:
    """One subscription to deliveries and one to receipts per agency, shared by both parts."""
    readiness: list[asyncio.Event] = []

    def ready() -> asyncio.Event:
        readiness.append(asyncio.Event())
        return readiness[-1]

    async def receipts(client: AgencyClient, ready: asyncio.Event) -> None:
        group = f"demo-{run_id}-{client.agency}-receipts"
        async for receipt in client.receipts(group=group, ready=ready):
            if receipt.event_id in life.ids:
                life.receipt(receipt)
            else:
                stream.receipt(receipt)

    coroutines: list[Coroutine[Any, Any, None]] = []
    for connector in life.agencies:
        subscription = _Subscription(connector, life, stream)
        group = f"demo-{run_id}-{connector.agency}"
        coroutines += [
            react_forever(subscription, group=group, ready=ready()),
            receipts(connector.client, ready()),
        ]
    return [asyncio.create_task(c) for c in coroutines], readiness


def stories_table(life: LifeSummary) -> Table:
    """The human summary of the life events: one row per story."""
    table = Table(title="life events across the four agencies")
    for column in (
        "story",
        "outcomes",
        "requests answered / timed out",
        "deliveries per recipient (seen / policy)",
        "complete",
    ):
        table.add_column(column)
    for story, stats in life.stories.items():
        recipients = sorted(set(stats.expected) | set(stats.deliveries))
        table.add_row(
            story.replace("_", " "),
            ", ".join(f"{outcome} {n}" for outcome, n in sorted(stats.outcomes.items())),
            f"{stats.answered} / {stats.timed_out} of {stats.requests}" if stats.requests else "-",
            ", ".join(f"{a} {stats.deliveries[a]}/{stats.expected[a]}" for a in recipients),
            f"{stats.complete} of {stats.played}",
        )
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(life.rejected.items()))
    table.caption = (
        f"{life.records} records written, {life.receipts} receipts"
        + (f", rejected: {rejected}" if rejected else ", none rejected")
        + f", {life.timeout_receipts} timeout receipts"
    )
    return table
