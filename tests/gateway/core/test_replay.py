"""The replay window: new events, redeliveries of the same record, and duplicates."""

from __future__ import annotations

from datetime import timedelta

from gateway.core.replay import Position, ReplayWindow, Seen
from tests.conftest import NOW

WINDOW = timedelta(hours=1)
KEY = ("police", "e-1")
AT = Position("xgw.ingress.police", 0, 41)


def test_unknown_id_is_new() -> None:
    """An id never remembered is NEW."""
    assert ReplayWindow(WINDOW, 10).check(KEY, AT, NOW) is Seen.NEW


def test_checking_does_not_remember() -> None:
    """Checking alone stores nothing; only remember() does."""
    window = ReplayWindow(WINDOW, 10)
    window.check(KEY, AT, NOW)
    assert window.check(KEY, Position("xgw.ingress.police", 0, 42), NOW) is Seen.NEW
    assert len(window) == 0


def test_same_position_is_redelivery() -> None:
    """The same id read again from the same topic, partition and offset is a REDELIVERY."""
    window = ReplayWindow(WINDOW, 10)
    window.remember(KEY, AT, NOW)
    assert window.check(KEY, Position("xgw.ingress.police", 0, 41), NOW) is Seen.REDELIVERY


def test_other_position_is_duplicate() -> None:
    """The same id in another record (offset, partition or topic differs) is a DUPLICATE."""
    window = ReplayWindow(WINDOW, 10)
    window.remember(KEY, AT, NOW)
    for other in (
        Position("xgw.ingress.police", 0, 42),
        Position("xgw.ingress.police", 1, 41),
        Position("xgw.ingress.health", 0, 41),
    ):
        assert window.check(KEY, other, NOW) is Seen.DUPLICATE


def test_same_id_from_another_source_is_new() -> None:
    """Ids are scoped by source: another agency may reuse an id."""
    window = ReplayWindow(WINDOW, 10)
    window.remember(KEY, AT, NOW)
    assert window.check(("health", "e-1"), AT, NOW) is Seen.NEW


def test_entry_lasts_until_the_window_ends() -> None:
    """Just before the window ends the id is still a DUPLICATE; at its end it is NEW again."""
    window = ReplayWindow(WINDOW, 10)
    window.remember(KEY, AT, NOW)
    other = Position("xgw.ingress.police", 0, 99)
    assert window.check(KEY, other, NOW + WINDOW - timedelta(microseconds=1)) is Seen.DUPLICATE
    assert window.check(KEY, other, NOW + WINDOW) is Seen.NEW
    assert len(window) == 0


def test_expiry_removes_only_old_entries() -> None:
    """An entry remembered later outlives one remembered earlier."""
    window = ReplayWindow(WINDOW, 10)
    window.remember(("police", "old"), AT, NOW)
    window.remember(("police", "young"), AT, NOW + timedelta(minutes=30))
    later = NOW + timedelta(minutes=61)
    assert window.check(("police", "old"), AT, later) is Seen.NEW
    assert window.check(("police", "young"), AT, later) is Seen.REDELIVERY
    assert len(window) == 1


def test_id_can_be_accepted_again_after_expiry() -> None:
    """After expiry an id is remembered afresh, for a full new window."""
    window = ReplayWindow(WINDOW, 10)
    window.remember(KEY, AT, NOW)
    again = NOW + WINDOW
    assert window.check(KEY, AT, again) is Seen.NEW
    window.remember(KEY, AT, again)
    assert window.check(KEY, AT, again + WINDOW / 2) is Seen.REDELIVERY


def test_max_entries_evicts_the_oldest() -> None:
    """Past max_entries the earliest remembered id is forgotten first."""
    window = ReplayWindow(WINDOW, 2)
    for offset, event_id in enumerate(["a", "b", "c"]):
        window.remember(("police", event_id), Position("t", 0, offset), NOW)
    assert len(window) == 2
    assert window.check(("police", "a"), Position("t", 0, 99), NOW) is Seen.NEW
    assert window.check(("police", "b"), Position("t", 0, 99), NOW) is Seen.DUPLICATE
    assert window.check(("police", "c"), Position("t", 0, 99), NOW) is Seen.DUPLICATE


def test_remembering_again_updates_position_without_a_second_entry() -> None:
    """Remembering a known id moves it to the new position and does not count it twice."""
    window = ReplayWindow(WINDOW, 2)
    first, second = Position("t", 0, 1), Position("t", 0, 2)
    window.remember(KEY, first, NOW)
    window.remember(KEY, second, NOW)
    window.remember(("police", "e-2"), first, NOW)
    assert len(window) == 2
    assert window.check(KEY, second, NOW) is Seen.REDELIVERY
    assert window.check(KEY, first, NOW) is Seen.DUPLICATE
