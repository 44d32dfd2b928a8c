"""Coverage-guided fuzzing of the record-to-decision path (``make fuzz``; docs/fuzzing.md).

    python -m gateway.lab.fuzz --seconds 1800 --corpus var/fuzz/corpus --crashes var/fuzz/crashes
    python -m gateway.lab.fuzz --replay var/fuzz/crashes/crash-1a2b...   # one input, traced

The engine is atheris (libFuzzer for CPython): it instruments the gateway, the schemas and the
agency SDK as they are imported, mutates the inputs that reach new branches and keeps them in
the corpus folder. The target, its seeds and its invariants are :mod:`gateway.lab.fuzz_target`;
an input that breaks an invariant, or raises, is written to the crashes folder and stops the
campaign with exit status 1. The seed corpus (valid records of every type, every forgery and
the records of issue 13) is written into the corpus folder on every start, so a kept corpus only
grows. Only the standard library is imported before the instrumented modules are.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

_INSTRUMENTED = ["gateway", "schemas", "connectors"]
_NO_ENGINE = "atheris is not installed: it is a dev dependency on Linux with CPython 3.11 or older"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.lab.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="campaign length (default 60)")
    parser.add_argument("--corpus", type=Path, default=Path("var/fuzz/corpus"))
    parser.add_argument("--crashes", type=Path, default=Path("var/fuzz/crashes"))
    parser.add_argument("--replay", type=Path, help="decide one input and show where it fails")
    parser.add_argument("--workers", type=int, default=1, help="parallel fuzzing processes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a campaign (or replay one input); the exit status is libFuzzer's."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    if args.replay is not None:
        return _replay(args.replay)
    try:
        import atheris  # noqa: PLC0415 - optional engine, imported before what it instruments
    except ImportError:
        print(f"xgw fuzz: {_NO_ENGINE}", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=_INSTRUMENTED):
        from gateway.lab.fuzz_target import (  # noqa: PLC0415 - instrumented on import
            MAX_INPUT_BYTES,
            FuzzWorld,
        )
    world = FuzzWorld.temporary()
    args.corpus.mkdir(parents=True, exist_ok=True)
    args.crashes.mkdir(parents=True, exist_ok=True)
    for seed in world.seeds():
        (args.corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)  # noqa: S324

    def one_input(data: bytes) -> None:
        scenario = world.scenario(data)
        if scenario is not None:
            world.check(scenario, world.decide(scenario))

    dictionary = args.crashes.parent / "xgw.dict"
    dictionary.write_text(
        "".join(f"{_dict_entry(word)}\n" for word in world.dictionary()), encoding="utf-8"
    )
    engine_argv = [
        sys.argv[0],
        str(args.corpus),
        f"-dict={dictionary}",
        f"-max_total_time={args.seconds}",
        f"-max_len={MAX_INPUT_BYTES}",
        f"-artifact_prefix={args.crashes}/",
        "-print_final_stats=1",
        "-timeout=10",
        "-rss_limit_mb=4096",
    ]
    if args.workers > 1:
        engine_argv.append(f"-fork={args.workers}")
    atheris.Setup(engine_argv, one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


def _dict_entry(word: str) -> str:
    """One libFuzzer dictionary line: the word's UTF-8 bytes, quoted, escaped as hex."""
    escaped = "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}"  # noqa: PLR2004
        for b in word.encode("utf-8")
    )
    return f'"{escaped}"'


def _replay(path: Path) -> int:
    """Decide one input without the engine and print each decision (or the broken promise)."""
    from gateway.lab.fuzz_target import FuzzWorld  # noqa: PLC0415 - same imports as a campaign

    world = FuzzWorld.temporary()
    scenario = world.scenario(path.read_bytes())
    if scenario is None:
        print("the input stands for nothing to decide")
        return 0
    decisions = world.decide(scenario)
    for decision in decisions:
        print(decision.reason or "accepted", decision.event_type or "-", decision.detail)
    world.check(scenario, decisions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
