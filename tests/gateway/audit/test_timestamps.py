"""RFC 3161 time-stamps of the audit checkpoints: the writer, the store, the record, verify.

A real local TSA (tests/support/tsa.py) answers over HTTP; the store runs on SQLite and on
PostgreSQL, and tokens are altered directly in SQL, as an operator with database access could.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from psycopg import sql

from gateway.audit import writer as writer_module
from gateway.audit.ops import verify_store
from gateway.audit.store import AuditStore, open_store
from gateway.audit.writer import AuditWriter
from gateway.cli import cli
from gateway.core.pipeline import Pipeline
from gateway.names import GATEWAY_OWNER
from gateway.trust.ca import load_signing_key
from gateway.trust.checkpoint import (
    CheckpointRecordError,
    PublishedCheckpoint,
    checkpoint_from_json,
    checkpoint_to_json,
    stamped_bytes,
)
from gateway.trust.timestamp import TsaClient, TsaTrust, verify_token
from tests.conftest import POSTGRES_URL, Pki
from tests.gateway.audit.test_chain import PEOPLE, SECRET, decisions
from tests.support.tsa import LocalTsa, TsaPki, closed_port_url, make_tsa_pki


class _Log:
    """Stands in for the writer's structlog logger: records (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.lines.append((level, event, fields))

    def at(self, level: str) -> list[tuple[str, dict[str, Any]]]:
        return [(event, fields) for lvl, event, fields in self.lines if lvl == level]


@dataclass
class Stamped:
    """A store, raw SQL on its database, its URL, a writer with a TSA, the TSA, the log."""

    store: AuditStore
    url: str
    execute: Callable[[str], None]
    writer: AuditWriter
    tsa: LocalTsa
    trust: TsaTrust
    log: _Log


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(params=["sqlite", "postgres"])
def stamped(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pki: Pki,
    tsa_pki: TsaPki,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stamped]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        url = f"sqlite:///{path}"

        def execute(statement: str) -> None:
            with sqlite3.connect(path) as connection:
                connection.execute(statement)
            connection.close()

    else:
        name = request.getfixturevalue("schema")
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{name}"

        def execute(statement: str) -> None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(name)))
                connection.execute(statement.encode())

    log = _Log()
    monkeypatch.setattr(writer_module, "log", log)
    trust = TsaTrust.from_pem_file(tsa_pki.ca_file)
    with LocalTsa(tsa_pki).serving() as tsa:
        store = open_store(url)
        key = load_signing_key(pki.directory, GATEWAY_OWNER, embed=True)
        writer = AuditWriter(
            store,
            SECRET,
            key,
            checkpoint_every=5,
            checkpoint_seconds=3600,
            publish_seconds=0,
            tsa=TsaClient(tsa.url, trust, timeout=5),
        )
        yield Stamped(store, url, execute, writer, tsa, trust, log)
        store.close()


def test_each_checkpoint_gets_a_verified_token_and_seals_get_none(
    stamped: Stamped, pipeline: Pipeline, pki: Pki
) -> None:
    """Checkpoints 5 and 10 are stamped over their JWS and published with it; the seal is not."""
    stamped.writer.write(decisions(pipeline, pki, PEOPLE))
    checkpoints = stamped.store.checkpoints()
    assert [c.seq for c in checkpoints] == [5, 10]
    assert stamped.tsa.requests == 2  # one per checkpoint, none per seal
    for checkpoint in checkpoints:
        assert checkpoint.tst is not None
        token = base64.b64decode(checkpoint.tst)
        verify_token(token, stamped_bytes(checkpoint), stamped.trust)
    seal = stamped.store.seal()
    assert seal is not None
    assert seal.tst is None
    published = {r.checkpoint.seq: r for r in stamped.writer.outbox}
    assert published[5].checkpoint == checkpoints[0]
    assert PublishedCheckpoint.decode(published[10].encode()) == published[10]
    assert "tst" not in json.loads(published[12].encode())  # the seal's record: as before
    assert [event for event, _ in stamped.log.at("info")] == ["audit checkpoint time-stamped"] * 2
    report = verify_store(stamped.store, pki.fresh_trust(), tsa=stamped.trust)
    assert report.ok, report.broken
    assert (report.checkpoints, report.timestamped, report.unchecked_timestamps) == (2, 2, 0)
    unchecked = verify_store(stamped.store, pki.fresh_trust())
    assert (unchecked.ok, unchecked.timestamped, unchecked.unchecked_timestamps) == (True, 0, 2)


@pytest.mark.parametrize("fault", ["down", "garbage", "reject", "http_error", "wrong_nonce"])
def test_a_tsa_that_fails_leaves_the_checkpoint_unstamped_and_is_asked_again(
    stamped: Stamped, pipeline: Pipeline, pki: Pki, fault: str
) -> None:
    """One warning line per checkpoint, the trail kept and verified; the next checkpoint asks."""
    records = decisions(pipeline, pki, PEOPLE)
    assert stamped.writer.tsa is not None
    healthy = stamped.writer.tsa
    if fault == "down":
        stamped.writer.tsa = TsaClient(closed_port_url(), stamped.trust, timeout=2)
    else:
        stamped.tsa.mode = fault  # type: ignore[assignment]
    assert stamped.writer.write(records[:7]) == 7
    (only,) = stamped.store.checkpoints()
    assert (only.seq, only.tst) == (5, None)
    (warning,) = stamped.log.at("warning")
    assert warning[0] == "audit checkpoint not time-stamped"
    assert warning[1]["seq"] == 5
    assert warning[1]["failures"] == 1
    assert "\n" not in warning[1]["error"]
    assert "exc_info" not in warning[1]
    assert verify_store(stamped.store, pki.fresh_trust(), tsa=stamped.trust).ok
    stamped.writer.tsa, stamped.tsa.mode = healthy, "ok"
    stamped.writer.write(records[7:])
    first, second = stamped.store.checkpoints()
    assert (first.tst, second.seq, second.tst is not None) == (None, 10, True)
    report = verify_store(stamped.store, pki.fresh_trust(), tsa=stamped.trust)
    assert (report.ok, report.timestamped) == (True, 1)


def test_a_token_altered_in_the_database_breaks_the_trail(
    stamped: Stamped, pipeline: Pipeline, pki: Pki
) -> None:
    """A token moved to another checkpoint, or corrupted, in SQL: verify reports BROKEN there."""
    stamped.writer.write(decisions(pipeline, pki, PEOPLE))
    first, second = stamped.store.checkpoints()
    stamped.execute(f"UPDATE audit_checkpoints SET tst = '{second.tst}' WHERE seq = 5")  # noqa: S608
    report = verify_store(stamped.store, pki.fresh_trust(), tsa=stamped.trust)
    assert report.broken is not None
    assert report.broken.seq == 5
    assert "RFC 3161 time-stamp does not verify" in report.broken.problem
    assert "messageImprint is not the hash of what was stamped" in report.broken.problem
    token = bytearray(base64.b64decode(first.tst or ""))
    token[-5] ^= 0x01  # inside the TSA's signature
    altered = base64.b64encode(bytes(token)).decode()
    stamped.execute(f"UPDATE audit_checkpoints SET tst = '{altered}' WHERE seq = 5")  # noqa: S608
    report = verify_store(stamped.store, pki.fresh_trust(), tsa=stamped.trust)
    assert report.broken is not None
    assert "signature over the signed attributes does not verify" in report.broken.problem
    stamped.execute("UPDATE audit_checkpoints SET tst = 'not base64!' WHERE seq = 5")
    assert "not base64" in str(
        verify_store(stamped.store, pki.fresh_trust(), tsa=stamped.trust).broken
    )
    # Without the TSA's CA the tokens are not checked, and said so: the chain itself is intact.
    assert verify_store(stamped.store, pki.fresh_trust()).ok


def test_xgw_audit_verify_reports_the_time_stamps(
    stamped: Stamped, pipeline: Pipeline, pki: Pki, tsa_pki: TsaPki
) -> None:
    """The OK line counts verified time-stamps, says when they were not checked, and BROKEN."""
    stamped.writer.write(decisions(pipeline, pki, PEOPLE))
    env = {"XGW_PKI_DIR": str(pki.directory), "XGW_AUDIT_STORE": stamped.url}
    runner = CliRunner()
    checked = runner.invoke(
        cli, ["audit", "verify"], env={**env, "XGW_AUDIT_TSA_CAFILE": str(tsa_pki.ca_file)}
    )
    assert checked.exit_code == 0, checked.output
    assert checked.output.strip() == (
        "audit trail OK: entries 1..12 (12), 2 signed checkpoints, 2 time-stamped (RFC 3161)"
    )
    as_json = runner.invoke(
        cli,
        ["audit", "verify", "--json"],
        env={**env, "XGW_AUDIT_TSA_CAFILE": str(tsa_pki.ca_file)},
    )
    assert json.loads(as_json.output)["timestamped"] == 2
    unchecked = runner.invoke(cli, ["audit", "verify"], env=env)
    assert unchecked.exit_code == 0, unchecked.output
    assert "2 RFC 3161 time-stamps not checked (set XGW_AUDIT_TSA_CAFILE" in unchecked.output
    stamped.execute(
        "UPDATE audit_checkpoints SET tst = (SELECT tst FROM audit_checkpoints WHERE seq = 10)"
        " WHERE seq = 5"
    )
    broken = runner.invoke(
        cli, ["audit", "verify"], env={**env, "XGW_AUDIT_TSA_CAFILE": str(tsa_pki.ca_file)}
    )
    assert broken.exit_code == 1
    (line,) = broken.output.strip().splitlines()
    assert line.startswith(
        "audit trail BROKEN at entry 5: the signed checkpoint's RFC 3161 time-stamp does not "
        "verify: "
    )


def test_a_store_made_before_time_stamps_gets_the_column(tmp_path: Path) -> None:
    """An SQLite store without the tst columns is upgraded on open; old rows read tst None."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE audit_checkpoints (seq BIGINT NOT NULL PRIMARY KEY, head_hash TEXT"
            " NOT NULL, signed_at TEXT NOT NULL, signature TEXT NOT NULL, certificate TEXT"
            " NOT NULL, root TEXT);"
            "INSERT INTO audit_checkpoints VALUES (3, 'h', 'at', 'sig', 'cert', 'r');"
        )
    connection.close()
    store = open_store(f"sqlite:///{path}")
    try:
        (old,) = store.checkpoints()
        assert (old.seq, old.root, old.tst) == (3, "r", None)
    finally:
        store.close()


def test_the_record_and_the_file_line_carry_the_token_only_when_there_is_one(
    stamped: Stamped, pipeline: Pipeline, pki: Pki
) -> None:
    """A token round-trips in a record and in a file line; a malformed one is refused."""
    stamped.writer.write(decisions(pipeline, pki, PEOPLE[:5]))
    record = next(r for r in stamped.writer.outbox if r.checkpoint.tst is not None)
    line = checkpoint_to_json(record.checkpoint)
    assert checkpoint_from_json(line) == record.checkpoint
    doc = json.loads(record.encode())
    for bad in ("", "***", 5, None):
        with pytest.raises(CheckpointRecordError, match="tst"):
            PublishedCheckpoint.decode(json.dumps({**doc, "tst": bad}).encode())


def _checkpoint_schema() -> Draft202012Validator:
    result = CliRunner().invoke(cli, ["schemas", "asyncapi"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    return Draft202012Validator(document["components"]["messages"]["auditCheckpoint"]["payload"])


def test_published_records_fit_the_asyncapi_document(
    stamped: Stamped, pipeline: Pipeline, pki: Pki
) -> None:
    """Records without a token fit the auditCheckpoint payload; with one, once it lists tst."""
    stamped.writer.write(decisions(pipeline, pki, PEOPLE))
    validator = _checkpoint_schema()
    plain = [json.loads(r.encode()) for r in stamped.writer.outbox if r.checkpoint.tst is None]
    assert plain
    for doc in plain:
        assert [e.message for e in validator.iter_errors(doc)] == []
    if "tst" not in validator.schema["properties"]:
        pytest.skip("schemas/asyncapi.py does not list the optional tst member yet")
    for record in stamped.writer.outbox:
        assert [e.message for e in validator.iter_errors(json.loads(record.encode()))] == []
