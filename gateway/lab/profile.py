"""Time the pure decision path: records per second through ``Pipeline.decide``, no Kafka.

    .venv/bin/python -m gateway.lab.profile                   # 2000 records, best of 5 runs
    .venv/bin/python -m gateway.lab.profile --batch 200       # decide_batch, 200 at a time
    .venv/bin/python -m gateway.lab.profile --profile         # plus a cProfile top list
    .venv/bin/python -m gateway.lab.profile --workdir /tmp/p  # keep PKI and records for reuse

Every record is a police ``ResidentRegistered`` event from the mock data (three recipients, so
three deliveries plus a receipt, all stamped, and an audit record per record). By default each
record is decided alone (``Pipeline.decide``: one stamp signature per record); ``--batch N``
calls ``Pipeline.decide_batch`` on N records at a time, as the worker does (one signature per
batch). With ``--workdir`` the PKI and the signed records are written once and reused, so the
printed digest of every output byte can be compared between two versions of the code: equal
digests (for the same ``--batch``) mean an unchanged wire format.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from connectors.mock import people
from gateway.core import envelope
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.lab.forgery import Forger
from gateway.runtime.bootstrap import memory_pipeline
from gateway.settings import Settings
from gateway.trust.ca import ensure_exchange, load_signing_key

AGENCIES = ("police", "health", "education", "land")
_META = "meta.json"
_RECORDS = "records.jsonl"


def _prepare(workdir: Path, count: int) -> tuple[Settings, list[IngressRecord], datetime]:
    """Create (or reuse) the PKI and ``count`` signed records in ``workdir``."""
    pki_dir = workdir / "pki"
    meta_path, records_path = workdir / _META, workdir / _RECORDS
    if meta_path.exists() and json.loads(meta_path.read_text())["count"] >= count:
        now = datetime.fromisoformat(json.loads(meta_path.read_text())["now"])
        lines = records_path.read_text().splitlines()[:count]
        raws = [bytes.fromhex(line) for line in lines]
    else:
        now = datetime.now(UTC).replace(microsecond=0)
        ensure_exchange(pki_dir, AGENCIES, now=now - timedelta(hours=1))
        keys = {agency: load_signing_key(pki_dir, agency, at=now) for agency in AGENCIES}
        forger = Forger(keys)
        rng = random.Random(7)  # noqa: S311 - reproducible fake people, not secrets
        raws = []
        while len(raws) < count:
            try:
                person = people.resident(rng, date(2026, 11, 20))
            except ValidationError:
                continue  # mock data the schemas refuse (say, a commune renamed) is skipped
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            event = forger.signed("police", person, now=now, event_id=event_id)
            raws.append(envelope.encode(event))
        records_path.write_text("".join(raw.hex() + "\n" for raw in raws))
        meta_path.write_text(json.dumps({"now": now.isoformat(), "count": count}))
    records = [
        IngressRecord("xgw.ingress.police", 0, offset, json.loads(raw)["subject"].encode(), raw, ())
        for offset, raw in enumerate(raws)
    ]
    return Settings(pki_dir=pki_dir), records, now


def _run(
    pipeline: Pipeline, records: list[IngressRecord], now: datetime, batch: int = 1
) -> tuple[float, str]:
    """Decide every record once; return the CPU seconds taken and a digest of all output bytes.

    CPU time of this process, not wall time, so that other work on the machine disturbs the
    figure less (the decision does no I/O, so the two differ only by what others take).
    """
    digest = hashlib.sha256()
    start = time.process_time()
    if batch <= 1:
        decisions = [pipeline.decide(record, now) for record in records]
    else:
        decisions = [
            decision
            for start in range(0, len(records), batch)
            for decision in pipeline.decide_batch(records[start : start + batch], now)
        ]
    elapsed = time.process_time() - start
    for decision in decisions:
        if not decision.accepted:
            raise SystemExit(f"record refused: {decision.reason} {decision.detail}")
        for out in decision.outputs:
            digest.update(out.topic.encode() + b"\0" + (out.value or b"") + b"\0")
    return elapsed, digest.hexdigest()


def main() -> None:
    """Parse the arguments, time the runs, print records/s and optionally a profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--records", type=int, default=2000, help="records per run")
    parser.add_argument("-r", "--runs", type=int, default=5, help="timed runs (best is kept)")
    parser.add_argument(
        "--batch", type=int, default=1, help="records per decide_batch call (1: decide each)"
    )
    parser.add_argument("--workdir", type=Path, help="keep PKI and records here for reuse")
    parser.add_argument("--profile", action="store_true", help="cProfile one more run")
    parser.add_argument("--top", type=int, default=25, help="profile entries to print")
    parser.add_argument("--sort", default="tottime", help="profile sort key (tottime, cumtime)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        settings, records, now = _prepare(workdir, args.records)
        # A warm-up pass on a few records loads the trust store's caches and schema models.
        _run(memory_pipeline(settings), records[: min(50, len(records))], now, args.batch)
        best = float("inf")
        digests = set()
        for _ in range(args.runs):
            elapsed, digest = _run(memory_pipeline(settings), records, now, args.batch)
            best = min(best, elapsed)
            digests.add(digest)
        per_s = len(records) / best
        print(
            f"{len(records)} records, "
            f"{'decide' if args.batch <= 1 else f'decide_batch of {args.batch}'}, "
            f"best of {args.runs}: {best:.3f} CPU s, "
            f"{per_s:,.0f} records/s, {1000 * best / len(records):.3f} ms/record"
        )
        print(f"output digest: {', '.join(sorted(digests))}")
        if args.profile:
            pipeline = memory_pipeline(settings)
            profiler = cProfile.Profile()
            profiler.enable()
            _run(pipeline, records, now, args.batch)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())


if __name__ == "__main__":
    main()
