"""The Java and Node.js programs of ``connectors/verifiers/``, built once per test session.

Without Node.js or Java and Maven a test that needs them is skipped on a developer's machine
and fails in CI (``CI`` set), where they are part of the machine.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cryptography.hazmat.primitives import serialization

from connectors.client import AgencyClient
from connectors.errors import RefusedDelivery
from connectors.transport import MemoryTransport
from gateway.clock import parse_rfc3339, rfc3339
from gateway.lab import vectors
from gateway.trust.ca import load_signing_key
from gateway.trust.x509 import X509TrustStore

VERIFIERS = Path(__file__).parents[2] / "connectors" / "verifiers"
NODE = VERIFIERS / "node"
JAVA = VERIFIERS / "java"


def _tool_missing(what: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is needed in CI and is not installed")
    pytest.skip(f"{what} is not installed; CI runs this")


@functools.cache
def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _tool_missing("Node.js (node, npm)")
    if not (NODE / "node_modules").exists():
        subprocess.run(  # noqa: S603 - the tools found on PATH, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE, check=True, timeout=600
        )
    return node


def node_script(script: str) -> list[str]:
    """``node <script>`` of the Node.js folder, its npm packages installed from the lock file."""
    return [_node(), str(NODE / script)]


@functools.cache
def _java_classpath() -> tuple[str, str]:
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None or mvn is None:
        _tool_missing("Java and Maven (java, mvn)")
    subprocess.run(  # noqa: S603 - the tools found on PATH, fixed arguments
        [
            mvn,
            "-B",
            "-q",
            "compile",
            "dependency:build-classpath",
            "-Dmdep.outputFile=target/classpath.txt",
        ],
        cwd=JAVA,
        check=True,
        timeout=900,
    )
    target = JAVA / "target"
    return java, f"{target / 'classes'}:{(target / 'classpath.txt').read_text().strip()}"


def _program(language: str, node_file: str, java_class: str) -> list[str]:
    if language == "node":
        return node_script(node_file)
    java, classpath = _java_classpath()
    return [java, "-cp", classpath, f"vn.hcm.xgw.verifier.{java_class}"]


def verifier(language: str) -> list[str]:
    """The command that verifies a vectors folder (given as its last argument)."""
    return _program(language, "verify.mjs", "Verify")


def verify(language: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run ``language``'s verifier on a vectors folder; its output and exit code."""
    return subprocess.run(  # noqa: S603 - the verifiers built above
        [*verifier(language), str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def all_as_expected(result: subprocess.CompletedProcess[str], cases: int) -> bool:
    """Exit 0, every case ``ok``, and the summary line counting ``cases`` of ``cases``."""
    lines = result.stdout.splitlines()
    return (
        result.returncode == 0
        and bool(lines)
        and lines[-1] == f"{cases} of {cases} cases as expected"
        and sum(line.startswith("ok ") for line in lines) == cases
    )


def client_conclusions(directory: Path) -> list[tuple[str, str | None, str | None]]:
    """(case, expected reason, the agency client's reason) for every case of the manifest."""
    manifest = json.loads((directory / vectors.MANIFEST).read_text(encoding="utf-8"))
    at: datetime = parse_rfc3339(manifest["verify_at"])
    pki_dir = (directory / manifest["root_certificate"]).parents[1]
    trust = X509TrustStore.from_directory(pki_dir)
    found = []
    for case in manifest["cases"]:
        client = AgencyClient(
            agency=case["verifier"],
            signing_key=load_signing_key(pki_dir, case["verifier"], at=at),
            trust=trust,
            transport=MemoryTransport(),
            clock=lambda: at,
        )
        check: Callable[[bytes], object] = (
            client.verify_delivery if case["kind"] == "delivery" else client.verify_receipt
        )
        try:
            check((directory / case["file"]).read_bytes())
            reason = None
        except RefusedDelivery as exc:
            reason = exc.reason.value
        found.append((case["name"], case["reason"], reason))
    return found


def key_files(pki_dir: Path, agency: str, folder: Path) -> tuple[Path, Path]:
    """The agency's private key and certificate as PEM files, as the agency itself holds them."""
    key = load_signing_key(pki_dir, agency, embed=True)
    key_file, cert_file = folder / f"{agency}.key.pem", folder / f"{agency}.crt.pem"
    key_file.write_bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    body = base64.encodebytes(base64.b64decode(key.x5c[0])).decode("ascii")
    cert_file.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    return key_file, cert_file


def sign(
    language: str,
    pki_dir: Path,
    agency: str,
    event_type: str,
    data: dict[str, Any],
    at: datetime,
    folder: Path,
) -> tuple[bytes, bytes]:
    """The record key and value ``language``'s signer makes of ``data``, as ``agency`` at ``at``.

    ``sign.mjs`` (jose, canonicalize) or ``Sign.java`` (nimbus-jose-jwt, the RFC 8785 library);
    the key and certificate are ``agency``'s newest in ``pki_dir``, as PEM files.
    """
    key_file, cert_file = key_files(pki_dir, agency, folder)
    data_file = folder / "data.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - node and the signer of this repository
        [
            *_program(language, "sign.mjs", "Sign"),
            f"--agency={agency}",
            f"--key={key_file}",
            f"--cert={cert_file}",
            f"--type={event_type}",
            f"--data={data_file}",
            f"--time={rfc3339(at)}",
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    key, value = result.stdout.rstrip(b"\n").split(b"\t", 1)
    return key, value
