"""The ``xgw`` command line: help everywhere, and one readable line on every error."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from rich.console import Console

from gateway.audit.ops import SharedRecord
from gateway.cli import cli
from gateway.cli.audit import _subject_record

COMMANDS = [
    [],
    ["demo"],
    ["broker"],
    ["worker"],
    ["agency"],
    ["top"],
    ["deadletter", "list"],
    ["deadletter", "replay"],
    *(["pki", c] for c in ("init", "enroll", "revoke", "list")),
    *(
        ["audit", c]
        for c in ("writer", "verify", "subject", "evidence", "check-evidence", "archive")
    ),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "xgw" for c in COMMANDS])
def test_every_command_has_help(command: list[str]) -> None:
    """Each command prints its help and exits 0."""
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_pki_init_creates_keys_once(tmp_path: Path) -> None:
    """Init creates the root and gateway certificates once; enrol, revoke and list then agree."""
    runner = CliRunner()
    first = runner.invoke(cli, ["pki", "init", "--pki-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert [line.split()[:2] for line in first.output.splitlines()] == [
        ["created", "root"],
        ["enrolled", "gateway"],
    ]
    (gateway_key,) = (tmp_path / "private").glob("gateway.*.key.pem")
    assert oct(gateway_key.stat().st_mode & 0o777) == "0o600"
    second = runner.invoke(cli, ["pki", "init", "--pki-dir", str(tmp_path)])
    assert second.exit_code == 0, second.output
    assert "already exists" in second.output
    enrolled = runner.invoke(
        cli, ["pki", "enroll", "police", "--alg", "ES256", "--pki-dir", str(tmp_path)]
    )
    assert enrolled.exit_code == 0, enrolled.output
    assert enrolled.output.startswith("enrolled police serial=")
    assert "alg=ES256" in enrolled.output
    serial = enrolled.output.split("serial=")[1].split()[0]
    revoked = runner.invoke(cli, ["pki", "revoke", serial, "--pki-dir", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    assert revoked.output.strip() == f"revoked police serial={serial}; CRL updated (1 revoked)"
    listed = runner.invoke(cli, ["pki", "list", "--pki-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines()}
    assert set(rows) == {"root", "gateway", "police"}
    assert " valid " in rows["gateway"]
    assert " revoked " in rows["police"]
    assert serial in rows["police"]


def _xgw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], contains: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert contains in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_keys_are_one_line(tmp_path: Path) -> None:
    """Listing or enrolling without a CA, or revoking a bad serial, fails with one line."""
    _one_line_error(_xgw("pki", "list", "--pki-dir", str(tmp_path)), "xgw pki init")
    _one_line_error(_xgw("pki", "enroll", "police", "--pki-dir", str(tmp_path)), "xgw pki init")
    _one_line_error(_xgw("pki", "revoke", "not-hex", "--pki-dir", str(tmp_path)), "hexadecimal")


def test_enrol_from_a_certificate_request(tmp_path: Path) -> None:
    """--csr certifies the agency's own key and --out writes the certificate to send back."""
    key = ed25519.Ed25519PrivateKey.generate()
    request = tmp_path / "police.csr.pem"
    request.write_bytes(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "police")]))
        .sign(key, None)
        .public_bytes(serialization.Encoding.PEM)
    )
    pki_dir, out = tmp_path / "pki", tmp_path / "police.crt.pem"
    assert _xgw("pki", "init", "--pki-dir", str(pki_dir)).returncode == 0
    made = _xgw(
        "pki",
        "enroll",
        "police",
        "--pki-dir",
        str(pki_dir),
        "--csr",
        str(request),
        "--out",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("enrolled police serial=")
    assert x509.load_pem_x509_certificate(out.read_bytes()).public_key() == key.public_key()
    assert list((pki_dir / "private").glob("police.*")) == []
    both = ("--csr", str(request), "--alg", "ES256")
    _one_line_error(_xgw("pki", "enroll", "police", "--pki-dir", str(pki_dir), *both), "--csr")
    _one_line_error(
        _xgw("pki", "enroll", "police", "--pki-dir", str(pki_dir), "--csr", str(out)),
        "not a PKCS#10 certificate signing request",
    )


def test_broken_policy_file_is_one_line(tmp_path: Path) -> None:
    """A policy with an unknown field fails with one line naming the file and the field."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'agencies = ["police", "health"]\n[[routes]]\n'
        'type = "vn.hcm.police.resident_registered.v1"\n'
        'publisher = "police"\n[[routes.recipients]]\nagency = "health"\npurpose = "care"\n'
        'legal_basis = "x"\nfields = ["blood_type"]\n',
        encoding="utf-8",
    )
    assert _xgw("pki", "init", "--pki-dir", str(tmp_path)).returncode == 0
    result = _xgw(
        "worker",
        "--pki-dir",
        str(tmp_path),
        "--bootstrap-servers",
        "127.0.0.1:1",
        env={"XGW_POLICY_FILE": str(policy)},
    )
    _one_line_error(result, "blood_type")


def test_invalid_setting_is_one_line() -> None:
    """An invalid XGW_ variable fails with one line naming the variable."""
    result = _xgw("pki", "list", env={"XGW_METRICS_PORT": "not-a-port"})
    _one_line_error(result, "XGW_METRICS_PORT")


def test_worker_without_broker_is_a_usage_error() -> None:
    """Starting a worker without bootstrap servers explains what to set."""
    result = _xgw("worker", env={"XGW_BOOTSTRAP_SERVERS": ""})
    assert result.returncode == 2
    assert "XGW_BOOTSTRAP_SERVERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_verify_of_a_broken_store_url_is_one_line() -> None:
    """An audit store URL of an unknown kind fails with one readable line."""
    _one_line_error(_xgw("audit", "verify", "--store", "mysql://nowhere/db"), "mysql")


def test_reading_an_audit_trail_that_is_not_there_is_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """verify, subject and evidence refuse a missing, empty or foreign file, and leave it so."""
    missing, empty, foreign = tmp_path / "typo.db", tmp_path / "empty.db", tmp_path / "other.db"
    empty.touch()
    with contextlib.closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    before = foreign.read_bytes()
    for path, says in ((missing, "no such file"), (empty, "an empty file"), (foreign, "no audit")):
        store = f"sqlite:///{path}"
        for command in (("verify",), ("subject", "079190012345"), ("evidence", "x")):
            result = _xgw("audit", *command, "--store", store)
            _one_line_error(result, says)
            assert "OK" not in result.stdout
    assert not missing.exists()
    assert empty.stat().st_size == 0
    assert foreign.read_bytes() == before
    with contextlib.closing(sqlite3.connect(foreign)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"t"}


def test_enrolling_an_id_the_policy_does_not_know_is_one_line(tmp_path: Path) -> None:
    """A typo (polise) gets no certificate."""
    assert _xgw("pki", "init", "--pki-dir", str(tmp_path)).returncode == 0
    result = _xgw("pki", "enroll", "polise", "--pki-dir", str(tmp_path))
    _one_line_error(result, "'polise' is not an agency of the policy (police, health")
    assert list((tmp_path / "certs").glob("polise.*")) == []


def test_the_citizen_report_reads_in_80_columns() -> None:
    """Each record a labelled block, Vietnamese beside English, in Vietnam's time, no cut text."""
    row = SharedRecord(
        decided_at="2026-12-06T19:38:00.000000Z",
        event_type="vn.hcm.police.resident_registered.v1",
        source="police",
        recipient="health",
        purpose="health_insurance_enrolment",
        legal_basis="Law on Health Insurance 2008 (amended 2024); Law 91/2025/QH15 on personal "
        "data protection",
        event_id="5b0e8f8e-2d5c-4a53-9a65-2f3f2f0d6a11",
    )
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(_subject_record(row))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "07/12/2026 02:38 (Vietnam time, UTC+7)" in text
    assert "vn.hcm.police.resident_registered.v1" in text  # not cut to "vn.hcm.pol…"
    assert "…" not in text
    assert "căn cứ pháp lý" in text
    assert "protection" in text


def test_a_policy_key_misspelled_names_the_typo_too(tmp_path: Path) -> None:
    """The missing key and the extra one it was meant to be, in one line."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'agencies = ["police", "health"]\n[[routes]]\n'
        'type = "vn.hcm.police.resident_registered.v1"\n'
        'publisher = "police"\n[[routes.recipients]]\nagency = "health"\npurpose = "care"\n'
        'legal_basiss = "x"\nfields = ["full_name"]\n',
        encoding="utf-8",
    )
    result = _xgw("schemas", "asyncapi", env={"XGW_POLICY_FILE": str(policy)})
    _one_line_error(result, "routes.0.recipients.0.legal_basis: Field required")
    assert "legal_basiss: Extra inputs are not permitted" in result.stderr


def test_a_misspelled_setting_is_warned_about_and_others_left_alone(tmp_path: Path) -> None:
    result = _xgw(
        "pki",
        "init",
        "--pki-dir",
        str(tmp_path),
        env={"XGW_POLICY_FIEL": "x.toml", "XGW_TEST_SOMETHING": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "xgw: warning: XGW_POLICY_FIEL is not a setting (did you mean XGW_POLICY_FILE?); ignored"
    ]


def test_an_unreachable_broker_is_named_as_such(tmp_path: Path) -> None:
    """Not "cannot create topics": the worker says it cannot reach Kafka, and where."""
    assert _xgw("pki", "init", "--pki-dir", str(tmp_path)).returncode == 0
    result = _xgw("worker", "--bootstrap-servers", "127.0.0.1:1", "--pki-dir", str(tmp_path))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "xgw: error: cannot reach Kafka at 127.0.0.1:1 (XGW_BOOTSTRAP_SERVERS)"
    assert "Traceback" not in result.stderr
