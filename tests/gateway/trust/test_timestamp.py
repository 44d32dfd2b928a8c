"""RFC 3161 time-stamps: request, response and token verification, against a real local TSA."""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.settings import load_settings
from gateway.trust.timestamp import (
    InvalidToken,
    TimestampError,
    TimestampRequest,
    TsaClient,
    TsaRefused,
    TsaTrust,
    TsaUnavailable,
    build_request,
    parse_response,
    verify_token,
)
from tests.support.tsa import (
    SILENCE_SECONDS,
    LocalTsa,
    TsaPki,
    closed_port_url,
    make_tsa_pki,
    sign_token,
)

DATA = b"eyJhbGciOiJFZDI1NTE5IiwidHlwIjoieGd3LWF1ZGl0LWNoZWNrcG9pbnQrandzIn0..c2ln"


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture
def tsa(tsa_pki: TsaPki) -> Iterator[LocalTsa]:
    with LocalTsa(tsa_pki).serving() as running:
        yield running


def _client(tsa: LocalTsa, ca_file: Path | None = None) -> TsaClient:
    return TsaClient(tsa.url, TsaTrust.from_pem_file(ca_file or tsa.pki.ca_file), timeout=5)


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_a_time_stamp_round_trips_over_http_and_verifies_again_later(
    tmp_path: Path, key_type: str
) -> None:
    """The TSA's answer verifies (imprint, nonce, signature, EKU, chain) and so does the token."""
    pki = make_tsa_pki(tmp_path, key_type=key_type)  # type: ignore[arg-type]
    with LocalTsa(pki).serving() as tsa:
        before = datetime.now(UTC) - timedelta(seconds=1)
        stamp = _client(tsa).stamp(DATA)
    assert before <= stamp.gen_time <= datetime.now(UTC)
    assert stamp.tsa == "CN=xgw test TSA,O=xgw tests"
    assert base64.b64decode(stamp.encoded) == stamp.token
    again = verify_token(stamp.token, DATA, TsaTrust.from_pem_file(pki.ca_file))
    assert (again.gen_time, again.serial) == (stamp.gen_time, stamp.serial)


def test_the_request_is_rfc_3161_v1_sha256_with_a_nonce_and_cert_req() -> None:
    """TimeStampReq: version 1, SHA-256 imprint of the data, a fresh random nonce, certReq."""
    first, second = build_request(DATA), build_request(DATA)
    request = tsp.TimeStampReq.load(first.der)
    assert request["version"].native == "v1"
    assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert request["message_imprint"]["hashed_message"].native == first.digest
    assert request["nonce"].native == first.nonce
    assert request["cert_req"].native is True
    assert first.nonce != second.nonce


@pytest.mark.parametrize(
    ("mode", "error", "says"),
    [
        ("wrong_imprint", InvalidToken, "messageImprint is not the hash of what was stamped"),
        ("wrong_nonce", InvalidToken, "nonce is not the request's"),
        ("bad_signature", InvalidToken, "signature over the signed attributes does not verify"),
        ("reject", TsaRefused, "PKIStatus rejection, failInfo bad_alg: unsupported algorithm"),
        ("garbage", TsaUnavailable, "not a TimeStampResp"),
        ("http_error", TsaUnavailable, "HTTP 503"),
    ],
)
def test_each_bad_answer_is_refused_with_its_reason(
    tsa: LocalTsa, mode: str, error: type[TimestampError], says: str
) -> None:
    """A wrong imprint or nonce, a broken signature, a refusal, garbage: each its own line."""
    tsa.mode = mode  # type: ignore[assignment]
    with pytest.raises(error, match=says) as caught:
        _client(tsa).stamp(DATA)
    assert "\n" not in str(caught.value)


def test_a_tsa_that_is_down_is_unavailable(tsa_pki: TsaPki) -> None:
    """Nothing listening on the TSA's port: TsaUnavailable, one line."""
    client = TsaClient(closed_port_url(), TsaTrust.from_pem_file(tsa_pki.ca_file), timeout=2)
    with pytest.raises(TsaUnavailable, match="did not answer"):
        client.stamp(DATA)


def test_a_tsa_that_never_answers_times_out(tsa: LocalTsa) -> None:
    """A TSA that takes the request and stays silent costs the timeout, not more."""
    tsa.mode = "silent"
    client = TsaClient(tsa.url, TsaTrust.from_pem_file(tsa.pki.ca_file), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TsaUnavailable, match="did not answer"):
        client.stamp(DATA)
    assert time.monotonic() - started < SILENCE_SECONDS


def test_a_tampered_token_is_refused(tsa: LocalTsa) -> None:
    """A TSTInfo changed under the signature breaks the message digest; a flipped byte, more."""
    stamp = _client(tsa).stamp(DATA)
    trust = TsaTrust.from_pem_file(tsa.pki.ca_file)
    token = cms.ContentInfo.load(stamp.token)
    info = token["content"]["encap_content_info"]["content"].parsed
    forged = tsp.TSTInfo({**info.native, "gen_time": stamp.gen_time - timedelta(days=30)})
    token["content"]["encap_content_info"] = {"content_type": "tst_info", "content": forged}
    with pytest.raises(InvalidToken, match="message-digest attribute is not the TSTInfo's"):
        verify_token(token.dump(force=True), DATA, trust)
    for index in range(0, len(stamp.token), 97):
        bent = bytearray(stamp.token)
        bent[index] ^= 0x40
        with pytest.raises(InvalidToken):
            verify_token(bytes(bent), DATA, trust)


def test_a_token_over_other_data_is_refused(tsa: LocalTsa) -> None:
    """A genuine token does not verify for other bytes (another checkpoint's JWS)."""
    stamp = _client(tsa).stamp(DATA)
    with pytest.raises(InvalidToken, match="messageImprint"):
        verify_token(stamp.token, DATA + b"x", TsaTrust.from_pem_file(tsa.pki.ca_file))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"eku": None}, "missing required extension"),
        ({"eku_critical": False}, "incorrect criticality"),
        ({"eku": [ExtendedKeyUsageOID.CODE_SIGNING]}, "not exactly id-kp-timeStamping"),
        (
            {"eku": [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CLIENT_AUTH]},
            "not exactly id-kp-timeStamping",
        ),
    ],
    ids=["no-eku", "eku-not-critical", "eku-code-signing", "eku-also-client-auth"],
)
def test_a_tsa_certificate_without_the_time_stamping_eku_is_refused(
    tmp_path: Path, options: dict[str, object], says: str
) -> None:
    """RFC 3161 2.3: the TSA certificate's EKU is critical and exactly id-kp-timeStamping."""
    pki = make_tsa_pki(tmp_path, **options)  # type: ignore[arg-type]
    with LocalTsa(pki).serving() as tsa, pytest.raises(InvalidToken, match=says) as caught:
        _client(tsa).stamp(DATA)
    assert "does not chain to the TSA trust anchors" in str(caught.value)


def test_a_tsa_of_another_ca_is_refused(tsa: LocalTsa, tmp_path: Path) -> None:
    """A genuine token from a TSA the CA file does not anchor proves nothing."""
    other = make_tsa_pki(tmp_path / "other")
    with pytest.raises(InvalidToken, match="does not chain to the TSA trust anchors"):
        _client(tsa, other.ca_file).stamp(DATA)
    stamp = _client(tsa).stamp(DATA)
    with pytest.raises(InvalidToken, match="does not chain"):
        verify_token(stamp.token, DATA, TsaTrust.from_pem_file(other.ca_file))


def test_a_token_signed_outside_the_tsa_certificate_validity_is_refused(tmp_path: Path) -> None:
    """The TSA certificate must be valid at genTime (not only today)."""
    pki = make_tsa_pki(tmp_path, valid_from=datetime.now(UTC) - timedelta(days=1))
    digest = build_request(DATA).digest
    token = sign_token(pki, digest, None, datetime.now(UTC) - timedelta(days=30), 7)
    with pytest.raises(InvalidToken, match="does not chain"):
        verify_token(token, DATA, TsaTrust.from_pem_file(pki.ca_file))


def test_the_token_brings_no_trust_of_its_own(tsa: LocalTsa, tmp_path: Path) -> None:
    """A token signed by a self-made TSA and its own CA, both embedded, is refused."""
    rogue = make_tsa_pki(tmp_path / "rogue")
    token = sign_token(rogue, build_request(DATA).digest, None, datetime.now(UTC), 1)
    with pytest.raises(InvalidToken, match="does not chain"):
        verify_token(token, DATA, TsaTrust.from_pem_file(tsa.pki.ca_file))


@pytest.fixture(scope="module")
def genuine(tsa_pki: TsaPki) -> tuple[TimestampRequest, bytes]:
    """One request and the test TSA's genuine answer to it, fixed for the property test."""
    request = build_request(DATA, nonce=3161)
    return request, LocalTsa(tsa_pki).respond(request.der)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_answers_raise_only_timestamp_errors(
    tsa_pki: TsaPki, genuine: tuple[TimestampRequest, bytes], data: st.DataObject
) -> None:
    """Random bytes, or a genuine answer with a byte changed or cut: only TimestampError."""
    request, answer = genuine
    size = len(answer)
    raw = data.draw(
        st.one_of(
            st.binary(max_size=300),
            st.builds(
                lambda i, x: answer[:i] + bytes([x]) + answer[i + 1 :],
                st.integers(0, size - 1),
                st.integers(0, 255),
            ),
            st.integers(0, size - 1).map(lambda n: answer[:n]),
        )
    )
    with contextlib.suppress(TimestampError):
        parse_response(raw, request, TsaTrust.from_pem_file(tsa_pki.ca_file))


def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path: Path) -> None:
    """A missing or non-PEM CA file is one readable ConfigError."""
    with pytest.raises(ConfigError, match="cannot read the TSA CA file"):
        TsaTrust.from_pem_file(tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        TsaTrust.from_pem_file(tmp_path / "bad.pem")


def test_settings_need_the_ca_file_with_the_url(tmp_path: Path, tsa_pki: TsaPki) -> None:
    """XGW_AUDIT_TSA_URL without XGW_AUDIT_TSA_CAFILE, a bad URL or a missing file: one line."""
    with pytest.raises(ConfigError, match="XGW_AUDIT_TSA_URL is set but XGW_AUDIT_TSA_CAFILE"):
        load_settings(audit_tsa_url="https://tsa.example/tsr")
    with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
        load_settings(audit_tsa_url="file:///etc/passwd", audit_tsa_cafile=tsa_pki.ca_file)
    with pytest.raises(ConfigError, match=r"XGW_AUDIT_TSA_CAFILE .*: no such file"):
        load_settings(audit_tsa_cafile=tmp_path / "nope.pem")
    good = load_settings(audit_tsa_url="https://tsa.example/tsr", audit_tsa_cafile=tsa_pki.ca_file)
    assert (good.audit_tsa_url, good.audit_tsa_timeout_seconds) == ("https://tsa.example/tsr", 10)


_OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(_OPENSSL is None, reason="openssl is not installed")


@needs_openssl
def test_openssl_verifies_the_test_tsa_answers(tsa_pki: TsaPki, tmp_path: Path) -> None:
    """The test TSA is genuine: `openssl ts -verify` accepts its answer to our request."""
    request = build_request(DATA)
    (tmp_path / "req.der").write_bytes(request.der)
    (tmp_path / "resp.der").write_bytes(LocalTsa(tsa_pki).respond(request.der))
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [
            _OPENSSL or "openssl",
            "ts",
            "-verify",
            "-in",
            "resp.der",
            "-queryfile",
            "req.der",
            "-CAfile",
            str(tsa_pki.ca_file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Verification: OK" in done.stdout, done.stderr


@needs_openssl
def test_tokens_made_by_openssl_verify(tsa_pki: TsaPki, tmp_path: Path) -> None:
    """An answer of `openssl ts -reply` (ESS signing-certificate v1) verifies, nonce included."""
    key = tmp_path / "tsa.key"
    key.write_bytes(
        tsa_pki.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "tsa.pem").write_bytes(tsa_pki.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "serial").write_text("01\n")
    (tmp_path / "tsa.cnf").write_text(
        "[ tsa ]\ndefault_tsa = t\n[ t ]\nserial = ./serial\nsigner_digest = sha256\n"
        "default_policy = 1.3.6.1.4.1.99999.3161.2\ndigests = sha256\naccuracy = secs:1\n"
        "ordering = no\ntsa_name = no\ness_cert_id_chain = no\n"
    )
    request = build_request(DATA)
    (tmp_path / "req.der").write_bytes(request.der)
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [
            _OPENSSL or "openssl",
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            "req.der",
            "-inkey",
            "tsa.key",
            "-signer",
            "tsa.pem",
            "-out",
            "resp.der",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    raw = (tmp_path / "resp.der").read_bytes()
    stamp = parse_response(raw, request, TsaTrust.from_pem_file(tsa_pki.ca_file))
    assert stamp.serial == 2  # openssl's serial file holds the last serial used
