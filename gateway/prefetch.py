"""Origin signatures of a batch, verified on a thread pool while the pipeline does the rest.

Ed25519 verification through libsodium releases the GIL, so a thread can verify record n + 1
while the main thread decides record n. :meth:`SignaturePrefetch.start` reads each record's
envelope and signer once, queues the signature checks in chunks, and hands back an
:class:`Early` per record that the pipeline uses instead of reading and verifying again.

Nothing here decides: a record whose envelope or signer is refused gets no :class:`Early` and
is decided exactly as without prefetching, and every check keeps its place in the pipeline's
order (a stale event with a bad signature is still ``stale_event``). Only verdicts for the key
the pipeline itself resolves are used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from gateway import envelope
from gateway.envelope import Envelope, Limits
from gateway.errors import Rejection
from gateway.keys import VerificationKey
from gateway.trust import TrustStore

# Small enough that the first verdicts are ready soon after the batch starts, large enough
# that a thread's per-chunk overhead stays small against ~70 µs per verification.
_CHUNK = 32

_Job = tuple[VerificationKey, bytes, bytes]  # key, signature, JWS signing input


def _verify_all(jobs: list[_Job]) -> list[bool]:
    return [key.verify(signature, message) for key, signature, message in jobs]


@dataclass(frozen=True, slots=True)
class Early:
    """A record's envelope, read ahead, and the pending verdict on its origin signature."""

    envelope: Envelope
    key: VerificationKey
    _chunk: Future[list[bool]]
    _index: int

    def verdict(self, key: VerificationKey) -> bool | None:
        """Whether the signature verifies under ``key``; ``None`` if another key was checked."""
        if key is not self.key:
            return None
        return self._chunk.result()[self._index]


class SignaturePrefetch:
    """A small thread pool verifying the origin signatures of each batch ahead of the pipeline."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="xgw-verify")

    def start(
        self,
        values: Sequence[bytes],
        *,
        trust: TrustStore,
        at: datetime,
        limits: Limits,
        max_bytes: int,
    ) -> list[Early | None]:
        """Read each record value's envelope and signer and queue its signature check."""
        early: list[tuple[Envelope, VerificationKey] | None] = []
        jobs: list[_Job] = []
        for value in values:
            ahead = _read_ahead(value, trust, at, limits, max_bytes)
            early.append(ahead)
            if ahead is not None:
                env, key = ahead
                jobs.append(
                    (key, env.signature.signature, env.signature.signing_input(env.signed_bytes))
                )
        chunks = [
            self._pool.submit(_verify_all, jobs[start : start + _CHUNK])
            for start in range(0, len(jobs), _CHUNK)
        ]
        result: list[Early | None] = []
        index = 0
        for ahead in early:
            if ahead is None:
                result.append(None)
                continue
            result.append(Early(ahead[0], ahead[1], chunks[index // _CHUNK], index % _CHUNK))
            index += 1
        return result

    def close(self) -> None:
        """Stop the threads (queued checks still finish)."""
        self._pool.shutdown(wait=True)


def _read_ahead(
    value: bytes, trust: TrustStore, at: datetime, limits: Limits, max_bytes: int
) -> tuple[Envelope, VerificationKey] | None:
    """The envelope and origin key of a record value, or ``None`` when either is refused."""
    if len(value) > max_bytes:
        return None
    try:
        env = envelope.read_envelope(value, limits=limits)
        trusted = envelope.resolve_origin(env, trust, at)
    except Rejection:
        return None  # decided (and refused) in order by the pipeline
    if env.signature.header.get("alg") != trusted.key.alg:
        return None  # the pipeline's own check refuses it
    return env, trusted.key


Verdict = Callable[[VerificationKey], bool | None]
