"""A real RFC 3161 Time-Stamp Authority for tests, on a free loopback port.

:func:`make_tsa_pki` makes a test CA and a TSA certificate issued by it (extended key usage
id-kp-timeStamping, critical, unless a test asks otherwise) in a folder, with ``cryptography``;
nothing is committed. :class:`LocalTsa` answers TimeStampReq over HTTP (``http.server`` in a
thread) with genuine TimeStampResp, signed CMS SignedData built with ``asn1crypto``. Its
``mode`` makes it misbehave the ways a TSA or the network can: refuse, answer garbage or an
HTTP error, or sign a token with another imprint or nonce.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Mode = Literal[
    "ok",
    "reject",
    "garbage",
    "http_error",
    "wrong_nonce",
    "wrong_imprint",
    "bad_signature",
    "silent",
]
TSA_POLICY = "1.3.6.1.4.1.99999.3161.1"  # a private-arc policy id for the test TSA
_DAY = timedelta(days=1)
SILENCE_SECONDS = 3.0


@dataclass(frozen=True)
class TsaPki:
    """A test CA, a TSA certificate issued by it, and the CA as a PEM trust anchor file."""

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate: x509.Certificate
    ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xgw tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_tsa_pki(
    directory: Path,
    *,
    key_type: Literal["ec", "rsa"] = "ec",
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.TIME_STAMPING,),
    eku_critical: bool = True,
    valid_from: datetime | None = None,
    name: str = "xgw test TSA",
) -> TsaPki:
    """A CA and a TSA certificate in ``directory`` (``ca.pem`` is the trust anchor file)."""
    directory.mkdir(parents=True, exist_ok=True)
    start = valid_from or datetime.now(UTC) - _DAY
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} CA"))
        .issuer_name(_name(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if key_type == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + 365 * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
    certificate = builder.sign(ca_key, hashes.SHA256())
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return TsaPki(ca_key, ca, key, certificate, ca_file)


class _Response(core.Sequence):
    """TimeStampResp with the token optional, as RFC 3161 has it (for refusals)."""

    _fields = [  # noqa: RUF012 - asn1crypto's schema declaration
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def sign_token(
    pki: TsaPki,
    digest: bytes,
    nonce: int | None,
    gen_time: datetime,
    serial: int,
) -> bytes:
    """A genuine TimeStampToken (DER) for the SHA-256 ``digest``, signed by ``pki``'s TSA."""
    info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": TSA_POLICY,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "serial_number": serial,
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "nonce": nonce,
        }
    )
    tst_der = info.dump()
    cert_der = pki.certificate.public_bytes(serialization.Encoding.DER)
    attributes = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
            {
                "type": "signing_certificate_v2",
                "values": [{"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]}],
            },
        ]
    )
    to_sign = attributes.dump()
    if isinstance(pki.key, rsa.RSAPrivateKey):
        signature = pki.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        algorithm = "sha256_rsa"
    else:
        signature = pki.key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        algorithm = "sha256_ecdsa"
    certificate = asn1_x509.Certificate.load(cert_der)
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": certificate.issuer,
                        "serial_number": certificate.serial_number,
                    }
                }
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": algorithm},
            "signature": signature,
        }
    )
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "tst_info", "content": info},
            "certificates": [certificate],
            "signer_infos": [signer],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


@dataclass
class LocalTsa:
    """An RFC 3161 TSA on ``url``; ``mode`` chooses how it answers the next requests."""

    pki: TsaPki
    mode: Mode = "ok"
    requests: int = 0
    _serial: int = 0
    _server: http.server.ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None, "start the TSA first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/tsr"

    def respond(self, query: bytes) -> bytes:
        """The TimeStampResp (DER) to a TimeStampReq, as ``mode`` says."""
        self.requests += 1
        if self.mode == "garbage":
            return b"<html>not a time-stamp</html>"
        if self.mode == "reject":
            status = {
                "status": "rejection",
                "status_string": ["unsupported algorithm"],
                "fail_info": {"bad_alg"},
            }
            return bytes(_Response({"status": status}).dump())
        request = tsp.TimeStampReq.load(query)
        digest = bytes(request["message_imprint"]["hashed_message"].native)
        nonce = request["nonce"].native
        if self.mode == "wrong_imprint":
            digest = hashlib.sha256(b"something else").digest()
        if self.mode == "wrong_nonce":
            nonce = (nonce or 0) + 1
        self._serial += 1
        token = sign_token(self.pki, digest, nonce, datetime.now(UTC), self._serial)
        if self.mode == "bad_signature":
            token = token[:-3] + bytes([token[-3] ^ 0x01]) + token[-2:]
        response = _Response(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        )
        return bytes(response.dump())

    @contextmanager
    def serving(self) -> Iterator[LocalTsa]:
        """Serve on a free loopback port until the block ends."""
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if tsa.mode == "silent":  # a TSA that takes the request and never answers
                    time.sleep(SILENCE_SECONDS)
                    return
                if tsa.mode == "http_error":
                    self.send_error(503, "time source unavailable")
                    return
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415, "not a time-stamp query")
                    return
                answer = tsa.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read the writer's logs, not the server's."""

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # a silent handler must not hold up the shutdown
        self._server.block_on_close = False
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)


def closed_port_url() -> str:
    """An http URL on a loopback port where nothing listens (a TSA that is down)."""
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsr"
