"""Ed25519 and P-256 keys: signing, key ids (RFC 7638 thumbprints) and PEM files.

Private keys are stored by :mod:`gateway.trust.pem`; public PEM files are no longer part of the
exchange (certificates carry public keys), so their writer and reader are helpers of this file.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import KeyMaterialError, XgwError
from gateway.trust.pem import load_private_pem, write_private_pem
from gateway.wire import b64url
from gateway.wire.canonical import canonical_bytes
from gateway.wire.keys import SigningKey, VerificationKey, jwk_thumbprint

ALGS = ["Ed25519", "ES256"]

# RFC 8037 appendix A.1 (private d, public x) and A.3 (the JWK thumbprint of that key).
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def write_public_pem(key: VerificationKey, path: Path) -> None:
    """Write the public key as SubjectPublicKeyInfo PEM (the PKI stores certificates instead)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_public_pem(path: Path) -> VerificationKey:
    """Read a SubjectPublicKeyInfo PEM public key (Ed25519 or P-256)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise KeyMaterialError(f"cannot read public key {path}: {exc.strerror}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"{path}: unsupported key type; use Ed25519 or P-256")
    return VerificationKey.from_public_key(key)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA key, which this profile does not support."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("alg", ALGS)
def test_signature_verifies_with_the_matching_key(alg: str) -> None:
    """A signature made by a key verifies under its own verification key."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    assert key.alg == alg
    assert key.verification_key.verify(key.sign(b"message"), b"message")


@pytest.mark.parametrize("alg", ALGS)
def test_signature_is_64_raw_bytes(alg: str) -> None:
    """Both algorithms give the 64-byte JWS signature form (ES256: r || s, not DER)."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    assert len(key.sign(b"message")) == 64


def test_es256_signature_is_r_concatenated_with_s() -> None:
    """An ES256 signature split into r and s verifies with cryptography's own DER check."""
    key = SigningKey.generate("ES256")
    signature = key.sign(b"message")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public = key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, b"message", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("alg", ALGS)
def test_signature_does_not_verify_over_other_bytes(alg: str) -> None:
    """A signature over one message is refused for a different message."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    assert not key.verification_key.verify(key.sign(b"message"), b"messagf")


@pytest.mark.parametrize("alg", ALGS)
def test_signature_does_not_verify_with_another_key(alg: str) -> None:
    """A signature is refused by the verification key of another key pair of the same alg."""
    key, other = SigningKey.generate(alg), SigningKey.generate(alg)  # type: ignore[arg-type]
    assert not other.verification_key.verify(key.sign(b"message"), b"message")


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_signature_does_not_verify(alg: str) -> None:
    """Flipping one bit of the signature makes it invalid."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    signature = bytearray(key.sign(b"message"))
    signature[10] ^= 0x01
    assert not key.verification_key.verify(bytes(signature), b"message")


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_wrong_length_is_invalid_not_an_error(alg: str, length: int) -> None:
    """A signature of the wrong length is reported invalid instead of raising."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    assert not key.verification_key.verify(b"\x01" * length, b"message")


def test_thumbprint_matches_rfc8037_example() -> None:
    """The Ed25519 public key of RFC 8037 A.1 has the thumbprint printed in A.3."""
    public = ed25519.Ed25519PublicKey.from_public_bytes(b64url.decode(RFC8037_X))
    assert jwk_thumbprint(public) == RFC8037_THUMBPRINT


def test_key_id_of_rfc8037_private_key_is_its_thumbprint() -> None:
    """The RFC 8037 A.1 private key signs with kid equal to the A.3 thumbprint."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(b64url.decode(RFC8037_D))
    key = SigningKey.from_private_key(private)
    assert key.kid == RFC8037_THUMBPRINT
    assert key.verification_key.kid == RFC8037_THUMBPRINT
    assert VerificationKey.from_public_key(private.public_key()).kid == RFC8037_THUMBPRINT


def test_p256_thumbprint_is_rfc7638_with_padded_coordinates() -> None:
    """A P-256 thumbprint hashes the compact sorted JWK with 32-byte x and y, leading zeros kept."""
    scalar = 1
    while True:  # find a deterministic key whose x coordinate has a leading zero byte
        private = ec.derive_private_key(scalar, ec.SECP256R1())
        numbers = private.public_key().public_numbers()
        if numbers.x < 2**248:
            break
        scalar += 1
    jwk = (
        '{"crv":"P-256","kty":"EC",'
        f'"x":"{b64url.encode(numbers.x.to_bytes(32, "big"))}",'
        f'"y":"{b64url.encode(numbers.y.to_bytes(32, "big"))}"}}'
    )
    assert len(json.loads(jwk)["x"]) == 43
    expected = b64url.encode(hashlib.sha256(jwk.encode("ascii")).digest())
    assert jwk_thumbprint(private.public_key()) == expected
    assert SigningKey.from_private_key(private).kid == expected


@pytest.mark.parametrize("alg", ALGS)
def test_signing_and_verification_key_share_id_and_alg(alg: str) -> None:
    """A signing key's verification key carries the same kid and alg."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    public = VerificationKey.from_public_key(key.private_key.public_key())
    assert (public.kid, public.alg) == (key.kid, key.alg)
    assert key.verification_key.kid == key.kid


def test_distinct_keys_have_distinct_ids() -> None:
    """Two freshly generated keys get different key ids."""
    assert SigningKey.generate().kid != SigningKey.generate().kid


def test_unsupported_curve_is_refused() -> None:
    """A P-384 key cannot be wrapped, as private or public key."""
    private = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyMaterialError, match="unsupported curve"):
        SigningKey.from_private_key(private)
    with pytest.raises(KeyMaterialError, match="unsupported curve"):
        VerificationKey.from_public_key(private.public_key())


@pytest.mark.parametrize("alg", ALGS)
def test_private_pem_round_trip(alg: str, tmp_path: Path) -> None:
    """A private key written as PEM loads back as the same key, and still signs for it."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    path = tmp_path / "private" / "police.key.pem"
    write_private_pem(key, path)
    loaded = load_private_pem(path)
    assert (loaded.kid, loaded.alg) == (key.kid, key.alg)
    assert key.verification_key.verify(loaded.sign(b"message"), b"message")


def test_private_pem_is_readable_by_owner_only(tmp_path: Path) -> None:
    """The private key file is created with mode 0600."""
    path = tmp_path / "gateway.key.pem"
    write_private_pem(SigningKey.generate(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_private_pem_overwrite_is_readable_by_owner_only(tmp_path: Path) -> None:
    """Overwriting an existing, world-readable key file still leaves it with mode 0600."""
    path = tmp_path / "gateway.key.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_pem(SigningKey.generate(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("alg", ALGS)
def test_public_pem_round_trip(alg: str, tmp_path: Path) -> None:
    """A public key written as PEM loads back with its kid and verifies the owner's signature."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    path = tmp_path / "public" / "police.pub.pem"
    write_public_pem(key.verification_key, path)
    loaded = load_public_pem(path)
    assert (loaded.kid, loaded.alg) == (key.kid, key.alg)
    assert loaded.verify(key.sign(b"message"), b"message")


def test_missing_files_raise_key_material_error_naming_the_path(tmp_path: Path) -> None:
    """A missing private or public key file raises KeyMaterialError naming the file."""
    path = tmp_path / "absent.pem"
    with pytest.raises(KeyMaterialError, match="cannot read private key") as private_error:
        load_private_pem(path)
    with pytest.raises(KeyMaterialError, match="cannot read public key") as public_error:
        load_public_pem(path)
    assert str(path) in str(private_error.value)
    assert str(path) in str(public_error.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        b"-----BEGIN " + b"PRIVATE KEY-----\nAAAA\n-----END " + b"PRIVATE KEY-----\n",
    ],
)
def test_garbage_files_raise_key_material_error(content: bytes, tmp_path: Path) -> None:
    """A file that is not a PEM key raises KeyMaterialError, not a cryptography error."""
    path = tmp_path / "garbage.pem"
    path.write_bytes(content)
    with pytest.raises(KeyMaterialError, match="is not an unencrypted PEM private key"):
        load_private_pem(path)
    with pytest.raises(KeyMaterialError, match="is not a PEM public key"):
        load_public_pem(path)


def test_public_pem_is_not_a_private_key(tmp_path: Path) -> None:
    """Loading a public key file as private key raises KeyMaterialError."""
    path = tmp_path / "public.pem"
    write_public_pem(SigningKey.generate().verification_key, path)
    with pytest.raises(KeyMaterialError, match="is not an unencrypted PEM private key"):
        load_private_pem(path)


def test_encrypted_private_key_is_refused(tmp_path: Path) -> None:
    """A password-protected PEM private key raises KeyMaterialError."""
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = tmp_path / "encrypted.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyMaterialError, match="is not an unencrypted PEM private key"):
        load_private_pem(path)


def test_rsa_keys_are_refused(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """RSA private and public PEM files raise KeyMaterialError saying the type is unsupported."""
    private = tmp_path / "rsa.key.pem"
    private.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "rsa.pub.pem"
    public.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyMaterialError, match="unsupported key type"):
        load_private_pem(private)
    with pytest.raises(KeyMaterialError, match="unsupported key type"):
        load_public_pem(public)


def test_key_material_error_is_a_gateway_error() -> None:
    """KeyMaterialError derives from the package's root XgwError."""
    assert issubclass(KeyMaterialError, XgwError)


# --- Ed25519 through libsodium: the same bytes as cryptography ---------------------------------

# RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte).
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]
# RFC 8037 appendix A.4: the Ed25519 JWS over "Example of Ed25519 signing" with the A.1 key.
RFC8037_SIGNING_INPUT = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = (
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


@pytest.mark.parametrize(("secret", "message", "signature"), RFC8032_VECTORS)
def test_ed25519_signatures_match_rfc8032(secret: str, message: str, signature: str) -> None:
    """Signing the RFC 8032 test messages gives the RFC's signatures, which verify."""
    key = SigningKey.from_private_key(
        ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    )
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert key.verification_key.verify(bytes.fromhex(signature), bytes.fromhex(message))


def test_ed25519_jws_signature_matches_rfc8037() -> None:
    """The RFC 8037 A.1 key signs the A.4 signing input to exactly the A.4 signature."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(b64url.decode(RFC8037_D))
    key = SigningKey.from_private_key(private)
    assert b64url.encode(key.sign(RFC8037_SIGNING_INPUT)) == RFC8037_SIGNATURE


@pytest.fixture(scope="module")
def ed25519_key() -> SigningKey:
    """One Ed25519 key for the property tests."""
    return SigningKey.generate("Ed25519")


@given(message=st.binary(max_size=4096))
def test_ed25519_signature_is_byte_identical_to_cryptography(
    ed25519_key: SigningKey, message: bytes
) -> None:
    """Libsodium's signature equals cryptography's (Ed25519 is deterministic), both ways valid."""
    private = ed25519_key.private_key
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    signature = ed25519_key.sign(message)
    assert signature == private.sign(message)
    private.public_key().verify(signature, message)  # cryptography accepts libsodium's
    assert ed25519_key.verification_key.verify(private.sign(message), message)


@given(message=st.binary(min_size=1, max_size=256), bit=st.integers(0, 64 * 8 - 1))
def test_ed25519_any_flipped_signature_bit_is_refused(
    ed25519_key: SigningKey, message: bytes, bit: int
) -> None:
    """Flipping any single bit of a valid Ed25519 signature makes it invalid."""
    signature = bytearray(ed25519_key.sign(message))
    signature[bit // 8] ^= 1 << (bit % 8)
    assert not ed25519_key.verification_key.verify(bytes(signature), message)


def test_ed25519_signature_with_s_not_reduced_is_refused(ed25519_key: SigningKey) -> None:
    """A signature whose S has the group order added (malleated) is refused."""
    order = 2**252 + 27742317777372353535851937790883648493
    signature = ed25519_key.sign(b"message")
    s = int.from_bytes(signature[32:], "little") + order
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not ed25519_key.verification_key.verify(malleated, b"message")


def test_verification_key_built_positionally_uses_the_fast_path() -> None:
    """A VerificationKey made field by field (as the trust store does) verifies as usual."""
    key = SigningKey.generate("Ed25519")
    rebuilt = VerificationKey(key.private_key.public_key(), "Ed25519", "another-kid")
    assert rebuilt.verify(key.sign(b"message"), b"message")
    assert not rebuilt.verify(key.sign(b"message"), b"other message")


def test_signing_key_repr_shows_no_secret_bytes() -> None:
    """The libsodium secret key is left out of the key's repr."""
    key = SigningKey.generate("Ed25519")
    assert "_ed25519" not in repr(key)


# --- the protected header, cached per key ------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize(
    "extra", [None, {}, {"typ": "xgw-stamp+jws"}, {"typ": "x", "xgw": {"to": "land"}}, {"iat": 7}]
)
def test_protected_header_is_base64url_of_canonical_header(
    alg: str, extra: dict[str, object] | None
) -> None:
    """The protected header is base64url(RFC 8785(jws_header + extra)), the first time and later."""
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    expected = b64url.encode(canonical_bytes({**key.jws_header(), **(extra or {})}))
    assert key.protected_header(extra) == expected
    assert key.protected_header(extra) == expected


def test_protected_headers_with_different_extras_do_not_collide() -> None:
    """Two typ values give two headers, each cached under its own parameters."""
    key = SigningKey.generate("Ed25519")
    first, second = key.protected_header({"typ": "a"}), key.protected_header({"typ": "b"})
    assert first != second
    assert key.protected_header({"typ": "a"}) == first
    assert key.protected_header() != first


def test_protected_header_cache_is_bounded() -> None:
    """Many distinct extra parameters are still encoded correctly, and the cache stays small."""
    key = SigningKey.generate("Ed25519")
    for n in range(100):
        extra = {"typ": f"t{n}"}
        assert key.protected_header(extra) == b64url.encode(
            canonical_bytes({**key.jws_header(), **extra})
        )
    assert len(key._headers) <= 16


def test_certificate_named_key_header_names_the_certificate(tmp_path: Path) -> None:
    """After with_certificate the cached header carries the new kid and x5t#S256, not the old."""
    from gateway.trust.ca import ensure_exchange, load_signing_key  # noqa: PLC0415 - PKI set-up only

    ensure_exchange(tmp_path, ["police"])
    key = load_signing_key(tmp_path, "police")
    bare = SigningKey.from_private_key(key.private_key)
    assert bare.protected_header() != key.protected_header()
    header = json.loads(b64url.decode(key.protected_header()))
    assert header == {"alg": key.alg, "kid": key.kid, "x5t#S256": key.x5t}
