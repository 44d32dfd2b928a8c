"""``xgw deadletter``: reading the ``xgw-*`` headers, filtering, listing and replaying."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.core.records import (
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_MAX_HEADERS,
    DEAD_LETTER_MAX_KEY,
    DEAD_LETTER_MAX_VALUE,
    OutRecord,
    dead_letter,
)
from gateway.core.replay import Position
from gateway.errors import XgwError
from gateway.names import TopicNames
from gateway.ops.deadletter import (
    DeadLetter,
    Filter,
    Found,
    format_line,
    make_filter,
    original_headers,
    parse_dead_letter,
    replayable,
)
from gateway.reasons import ReasonCode
from tests.support.deadletters import DECIDED, ORIGINAL_HEADERS, PAYLOAD, dead_letter_record


def _letter(record: OutRecord, topics: TopicNames | None = None) -> DeadLetter:
    return parse_dead_letter(3, 7, record.headers, len(record.value), topics or TopicNames())


def test_headers_of_a_gateway_dead_letter_are_parsed() -> None:
    """Every xgw-* header the gateway writes comes back as a typed field."""
    letter = _letter(dead_letter_record())
    assert letter == DeadLetter(
        partition=3,
        offset=7,
        reason="revoked_certificate",
        detail="certificate serial 1f revoked",
        ingress_topic="xgw.ingress.police",
        ingress_partition=2,
        ingress_offset=41,
        decided_at=DECIDED,
        event_id="ev-1",
        size=len(PAYLOAD),
        agency="police",
    )


def test_the_gateway_writes_the_dead_letter_headers_after_the_agencys() -> None:
    """The writer appends DEAD_LETTER_HEADERS in order (no event id: none), as documented."""
    always, optional = DEAD_LETTER_HEADERS[:6], DEAD_LETTER_HEADERS[6:]
    assert optional == ("xgw-event-id", "xgw-omitted", "xgw-record-sha256")
    ours = [name for name, _ in dead_letter_record().headers[len(ORIGINAL_HEADERS) :]]
    assert ours == [*always, "xgw-event-id"]
    anonymous = dead_letter_record(event_id=None).headers[len(ORIGINAL_HEADERS) :]
    assert [name for name, _ in anonymous] == list(always)
    documented = (Path(__file__).parents[3] / "docs" / "envelope.md").read_text(encoding="utf-8")
    assert [name for name in DEAD_LETTER_HEADERS if f"`{name}`" not in documented] == []


def test_missing_or_garbled_headers_become_none() -> None:
    """A record without our headers, or with unreadable ones, parses without raising."""
    bare = parse_dead_letter(0, 0, (), 5, TopicNames())
    assert (bare.reason, bare.ingress_topic, bare.decided_at, bare.agency) == (None,) * 4
    garbled = parse_dead_letter(
        0,
        1,
        (
            ("xgw-ingress-partition", b"two"),
            ("xgw-decided-at", b"\xff\xfe"),
            ("xgw-ingress-topic", b"somewhere.else"),
        ),
        5,
        TopicNames(),
    )
    assert garbled.ingress_partition is None
    assert garbled.decided_at is None
    assert garbled.ingress_topic == "somewhere.else"
    assert garbled.agency is None


def test_original_headers_drop_only_ours() -> None:
    """Replay headers are the agency's own, in order, without any xgw-* header."""
    assert original_headers(dead_letter_record().headers) == ORIGINAL_HEADERS


def test_filter_matches_reason_agency_and_time() -> None:
    """Each given criterion must hold; a record without a decision time fails ``since``."""
    letter = _letter(dead_letter_record())
    assert Filter().matches(letter)
    assert Filter(reason="revoked_certificate", agency="police", since=DECIDED).matches(letter)
    assert not Filter(reason="bad_signature").matches(letter)
    assert not Filter(agency="health").matches(letter)
    assert not Filter(since=DECIDED + timedelta(seconds=1)).matches(letter)
    assert not Filter(since=DECIDED).matches(parse_dead_letter(0, 0, (), 0, TopicNames()))


def test_make_filter_checks_reason_and_time() -> None:
    """Command-line values are checked: unknown reasons and bad times are errors, naive is UTC."""
    assert make_filter(None, None, "2026-11-20T08:30").since == DECIDED
    assert make_filter(None, None, "2026-11-20T15:30+07:00").since == DECIDED
    assert make_filter("bad_signature", "police", None) == Filter("bad_signature", "police")
    with pytest.raises(XgwError, match="unknown reason code"):
        make_filter("revoked", None, None)
    with pytest.raises(XgwError, match="ISO 8601"):
        make_filter(None, None, "yesterday")


def test_listing_never_shows_key_or_payload() -> None:
    """The list line and JSON carry ids and reasons, never the record's key or payload."""
    letter = _letter(dead_letter_record())
    line = format_line(letter)
    document = json.dumps(letter.as_dict())
    for text in (line, document):
        assert "079190012345" not in text
        assert "Nguyen" not in text
    assert "3/7" in line
    assert "xgw.ingress.police/2/41" in line
    assert "revoked_certificate" in line
    assert "2026-11-20T08:30:00.000000Z" in line
    assert f"{len(PAYLOAD)}B" in line
    found = Found(letter, b"079190012345", PAYLOAD, ())
    assert "079190012345" not in repr(found)


def test_replay_goes_only_to_ingress_topics() -> None:
    """A dead letter naming a delivery topic or no topic is never replayed."""
    records = [
        dead_letter_record(),
        dead_letter_record(ingress="xgw.deliver.health"),
        OutRecord("xgw.deadletter", None, b"x", ()),
    ]
    found = [Found(_letter(r), r.key, r.value, r.headers) for r in records]
    ok, refused = replayable(found)
    assert [f.letter.ingress_topic for f in ok] == ["xgw.ingress.police"]
    assert len(refused) == 2


def test_without_bootstrap_servers_the_error_is_one_line() -> None:
    """Listing with no broker configured fails with one line saying what to set."""
    result = CliRunner().invoke(
        cli, ["deadletter", "list"], env={"XGW_BOOTSTRAP_SERVERS": ""}, catch_exceptions=False
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "xgw: error: set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers (try 'xgw broker')"
    ]


def test_unreachable_broker_is_one_line() -> None:
    """Replaying against a broker nobody listens on fails with one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "deadletter", "replay", "--dry-run"],
        capture_output=True,
        text=True,
        env={**os.environ, "XGW_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "xgw: error: cannot reach the broker at 127.0.0.1:1"
    ]


def test_replay_needs_a_destination() -> None:
    """Replay without --to-ingress or --dry-run is a usage error, before any broker is touched."""
    result = CliRunner().invoke(cli, ["deadletter", "replay"], env={"XGW_BOOTSTRAP_SERVERS": ""})
    assert result.exit_code == 2
    assert "--to-ingress" in result.stderr


# --- against the real broker -------------------------------------------------------------------


def test_a_dead_letter_copies_no_more_than_a_kafka_record_holds() -> None:
    """An oversized value, key or header set is left out, named, and the value's digest kept."""
    value = b"x" * (DEAD_LETTER_MAX_VALUE + 1)
    key = b"k" * (DEAD_LETTER_MAX_KEY + 1)
    headers = tuple((f"h{n}", b"v" * 1024) for n in range(DEAD_LETTER_MAX_HEADERS // 1024 + 1))
    out = dead_letter(
        topic="xgw.deadletter",
        position=Position("xgw.ingress.police", 2, 41),
        key=key,
        value=value,
        headers=headers,
        now=DECIDED,
        reason=ReasonCode.RECORD_TOO_LARGE,
        detail="too large",
        event_id=None,
    )
    assert (out.key, out.value) == (None, b"")
    named = dict(out.headers)
    assert named["xgw-omitted"] == b"value,key,headers"
    assert named["xgw-record-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert [k for k, _ in out.headers if not k.startswith("xgw-")] == []
    assert sum(len(k) + len(v) for k, v in out.headers) < 1024
    letter = parse_dead_letter(0, 0, out.headers, 0, TopicNames())
    assert letter.omitted == ("value", "key", "headers")
    found = Found(letter, None, b"", ())
    assert replayable([found]) == ([], [found])


def test_text_that_is_not_unicode_never_stops_a_dead_letter() -> None:
    """Whatever text reached it, the builder writes headers (a lone surrogate is escaped)."""
    out = dead_letter(
        topic="xgw.deadletter",
        position=Position("xgw.ingress.police", 0, 1),
        key=None,
        value=b"{}",
        headers=(),
        now=DECIDED,
        reason=ReasonCode.MALFORMED_ENVELOPE,
        detail="bad \ud800 text",
        event_id="\ud800",
    )
    assert dict(out.headers)["xgw-event-id"] == b"\\ud800"
    assert dict(out.headers)["xgw-detail"] == b"bad \\ud800 text"
