"""``xgw pki``: the exchange's root CA, enrolment, revocation and the certificate list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.cli.options import pki_dir_option
from gateway.errors import XgwError
from gateway.settings import load_settings

if TYPE_CHECKING:
    from gateway.trust.ca import CertInfo


@click.group()
def pki() -> None:
    """The exchange's X.509 PKI: root CA, certificates, CRL (under XGW_PKI_DIR, never committed)."""


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _certificate_line(verb: str, info: CertInfo) -> str:
    return (
        f"{verb} {info.owner} serial={info.serial:x} alg={info.alg}"
        f" valid until {_when(info.not_after)} x5t#S256={info.fingerprint}"
    )


@pki.command("init")
@pki_dir_option
@click.option("--force", is_flag=True, help="Replace an existing CA (its files move to retired/).")
@click.option(
    "--days",
    type=click.IntRange(1, 36_500),
    default=3650,
    show_default=True,
    help="Validity of the root CA in days.",
)
def pki_init(pki_dir: Path | None, force: bool, days: int) -> None:
    """Create the exchange root CA, its CRL and the gateway's signing certificate."""
    from gateway.names import GATEWAY_OWNER  # noqa: PLC0415
    from gateway.trust.ca import init_ca, list_certificates  # noqa: PLC0415
    from gateway.trust.layout import PkiLayout  # noqa: PLC0415

    settings = load_settings(pki_dir=pki_dir)
    existed = PkiLayout(settings.pki_dir).root_certificate.exists() and not force
    root = init_ca(settings.pki_dir, days=days, force=force)
    gateway = [i for i in list_certificates(settings.pki_dir) if i.owner == GATEWAY_OWNER]
    if existed:
        click.echo(f"a root CA already exists under {settings.pki_dir} (use --force to replace it)")
    click.echo(_certificate_line("exists" if existed else "created", root))
    if gateway:
        click.echo(_certificate_line("exists" if existed else "enrolled", gateway[-1]))


@pki.command("enroll")
@pki_dir_option
@click.argument("agency")
@click.option(
    "--alg",
    type=click.Choice(["Ed25519", "ES256", "EdDSA"]),
    default=None,
    help="The new key's JWS algorithm [default: Ed25519]; EdDSA is the deprecated name of "
    "Ed25519 (RFC 9864). Not with --csr: the request's key decides.",
)
@click.option(
    "--csr",
    "request_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Certify the key of this PKCS#10 request (PEM or DER) instead of making one: the "
    "agency keeps its private key.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the certificate (PEM) here, to send back to the agency.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 36_500),
    default=365,
    show_default=True,
    help="Validity in days (never past the root CA's).",
)
def pki_enroll(
    pki_dir: Path | None,
    agency: str,
    alg: str | None,
    request_file: Path | None,
    out: Path | None,
    days: int,
) -> None:
    """Certify a signing key for AGENCY (or 'gateway'): a new one, or the one of a --csr."""
    from gateway.trust.ca import enroll, enroll_request  # noqa: PLC0415

    settings = load_settings(pki_dir=pki_dir)
    _check_known(agency, settings.policy_file)
    if request_file is None:
        info = enroll(settings.pki_dir, agency, alg=alg or "Ed25519", days=days)
    elif alg is not None:
        raise XgwError("--alg and --csr exclude each other: the request's key decides")
    else:
        try:
            request = request_file.read_bytes()
        except OSError as exc:
            raise XgwError(f"cannot read {request_file}: {exc.strerror}") from exc
        info = enroll_request(settings.pki_dir, agency, request, days=days)
    if out is not None:
        try:
            out.write_bytes(info.path.read_bytes())
        except OSError as exc:
            raise XgwError(f"cannot write {out}: {exc.strerror}") from exc
    click.echo(_certificate_line("enrolled", info))


def _check_known(agency: str, policy_file: Path) -> None:
    """A certificate for an id the policy does not know is a typo (``polise``), not an agency."""
    from gateway.core.policy import load_policy  # noqa: PLC0415
    from gateway.names import GATEWAY_OWNER  # noqa: PLC0415
    from schemas.registry import REGISTRY  # noqa: PLC0415

    agencies = load_policy(policy_file, REGISTRY).agencies
    if agency != GATEWAY_OWNER and agency not in agencies:
        raise XgwError(
            f"{agency!r} is not an agency of the policy ({', '.join(agencies)}); "
            f"add it to {policy_file} first"
        )


@pki.command("revoke")
@pki_dir_option
@click.argument("serial")
def pki_revoke(pki_dir: Path | None, serial: str) -> None:
    """Revoke the certificate with SERIAL (hex, as listed) and re-issue the signed CRL."""
    from gateway.trust.ca import list_certificates, revoke  # noqa: PLC0415

    digits = serial.strip().lower().removeprefix("0x").replace(":", "")
    try:
        number = int(digits, 16)
    except ValueError:
        raise XgwError(f"serial {serial!r} is not a hexadecimal number") from None
    settings = load_settings(pki_dir=pki_dir)
    info = revoke(settings.pki_dir, number)
    count = sum(1 for i in list_certificates(settings.pki_dir) if i.revoked_at is not None)
    click.echo(f"revoked {info.owner} serial={info.serial:x}; CRL updated ({count} revoked)")


@pki.command("list")
@pki_dir_option
def pki_list(pki_dir: Path | None) -> None:
    """List the root CA and every issued certificate with its status now."""
    from gateway.trust.ca import list_certificates, root_info  # noqa: PLC0415

    settings = load_settings(pki_dir=pki_dir)
    now = datetime.now(UTC)
    for info in [root_info(settings.pki_dir), *list_certificates(settings.pki_dir)]:
        click.echo(
            f"{info.owner:<10} {info.serial:x} {info.alg:<6} {_when(info.not_before)}"
            f" {_when(info.not_after)} {info.status(now):<13} x5t#S256={info.fingerprint}"
        )
