"""Key material of the exchange on disk (``XGW_PKI_DIR``, git-ignored).

    <pki_dir>/public/<owner>.pub.pem     trusted public keys: the gateway and each agency
    <pki_dir>/private/<owner>.key.pem    private keys (0600); in production each agency keeps
                                         only its own, and the gateway only its own

This is the plain-key trust model; agency certificates from an exchange CA replace it later
behind the same :class:`gateway.trust.TrustStore` interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.errors import KeyMaterialError
from gateway.keys import Algorithm, SigningKey, load_public_pem, write_private_pem, write_public_pem
from gateway.trust import GATEWAY_OWNER


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One trusted public key on disk."""

    owner: str
    alg: str
    kid: str
    path: Path


def init_keys(
    pki_dir: Path, agencies: tuple[str, ...], *, alg: Algorithm = "EdDSA", force: bool = False
) -> list[KeyInfo]:
    """Create key pairs for the gateway and each agency lacking one (all, with ``force``)."""
    created: list[KeyInfo] = []
    for owner in (GATEWAY_OWNER, *agencies):
        private = pki_dir / "private" / f"{owner}.key.pem"
        public = pki_dir / "public" / f"{owner}.pub.pem"
        if private.exists() and public.exists() and not force:
            continue
        key = SigningKey.generate(alg)
        try:
            write_private_pem(key, private)
            write_public_pem(key.verification_key, public)
        except OSError as exc:
            raise KeyMaterialError(f"cannot write keys under {pki_dir}: {exc.strerror}") from exc
        created.append(KeyInfo(owner, key.alg, key.kid, public))
    return created


def list_keys(pki_dir: Path) -> list[KeyInfo]:
    """Every trusted public key under ``pki_dir``."""
    infos = []
    for path in sorted((pki_dir / "public").glob("*.pub.pem")):
        key = load_public_pem(path)
        infos.append(KeyInfo(path.name.split(".", 1)[0], key.alg, key.kid, path))
    return infos
