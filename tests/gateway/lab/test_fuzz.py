"""The fuzz target: its seeds, its invariants, and a short coverage-guided campaign.

The invariants must catch each broken promise; ``make fuzz`` runs the long campaign.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.core import profile
from gateway.core.pipeline import Decision
from gateway.lab.fuzz_target import FuzzWorld, InvariantBroken, Mode, Scenario
from gateway.reasons import ReasonCode
from gateway.wire import disclosure as sd
from schemas.registry import REGISTRY

CAMPAIGN_SECONDS = 30


@pytest.fixture(scope="module")
def world() -> FuzzWorld:
    return FuzzWorld.temporary()


def decided(world: FuzzWorld, data: bytes) -> tuple[Scenario, list[Decision]]:
    scenario = world.scenario(data)
    assert scenario is not None
    return scenario, world.decide(scenario)


def test_every_seed_is_decided_within_the_promises(world: FuzzWorld) -> None:
    """Every seed keeps the invariants; each type is delivered, each forgery refused.

    The seeds hold a valid record of every registered type (delivered, or refused with
    ``no_recipients`` while the policy routes it nowhere) and every forgery, refused for its
    own reason.
    """
    delivered: set[str] = set()
    nowhere: set[str] = set()
    refused: set[ReasonCode] = set()
    for seed in world.seeds():
        scenario, decisions = decided(world, seed)
        world.check(scenario, decisions)
        last = decisions[-1]
        if last.accepted:
            delivered.add(str(last.event_type))
        elif last.reason is ReasonCode.NO_RECIPIENTS:
            nowhere.add(str(last.event_type))
        elif last.reason is not None:
            refused.add(last.reason)
    assert delivered | nowhere == set(REGISTRY.types())
    assert len(delivered) >= len(REGISTRY.types()) - 3
    assert set(world.forger.reasons()) <= refused


def _accepted_resident(world: FuzzWorld) -> tuple[Scenario, Decision]:
    seed = next(s for s in world.seeds() if s[0] == Mode.RAW and b"resident_registered" in s[:400])
    scenario, decisions = decided(world, seed)
    assert decisions[0].accepted
    return scenario, decisions[0]


def _tampered(decision: Decision, change: object) -> Decision:
    """``decision`` with its first delivery's event changed by ``change`` (a function)."""
    outputs = list(decision.outputs)
    index = next(i for i, o in enumerate(outputs) if ".deliver." in o.topic)
    event = json.loads(outputs[index].value or b"")
    change(event)  # type: ignore[operator]
    outputs[index] = replace(outputs[index], value=json.dumps(event).encode())
    return replace(decision, outputs=tuple(outputs))


def test_an_ungranted_field_in_a_delivery_breaks_the_invariant(world: FuzzWorld) -> None:
    scenario, decision = _accepted_resident(world)

    def add_field(event: dict[str, object]) -> None:
        shown = sd.split(str(event[profile.DISCLOSURES]))
        event[profile.DISCLOSURES] = sd.join(
            [*(sd.parse(p) for p in shown), sd.make("secret_note", "Phường Bến Nghé")]
        )

    with pytest.raises(InvariantBroken, match="secret_note"):
        world.check(scenario, [_tampered(decision, add_field)])


def test_an_attribute_outside_the_profile_in_a_delivery_breaks_the_invariant(
    world: FuzzWorld,
) -> None:
    scenario, decision = _accepted_resident(world)
    tampered = _tampered(decision, lambda e: e.update(homeaddress="12 Lê Lợi"))
    with pytest.raises(InvariantBroken, match="homeaddress"):
        world.check(scenario, [tampered])


def test_a_refusal_without_a_dead_letter_or_with_a_delivery_breaks_the_invariant(
    world: FuzzWorld,
) -> None:
    scenario, accepted = _accepted_resident(world)
    refused = replace(accepted, reason=ReasonCode.BAD_SIGNATURE)
    with pytest.raises(InvariantBroken, match="yet delivered"):
        world.check(scenario, [refused])
    bare = replace(refused, outputs=tuple(o for o in refused.outputs if ".deliver." not in o.topic))
    with pytest.raises(InvariantBroken, match="without a dead letter"):
        world.check(scenario, [bare])
    with pytest.raises(InvariantBroken, match="decisions"):
        world.check(scenario, [])
    failed = replace(bare, reason=ReasonCode.INTERNAL_ERROR, detail="internal error: KeyError")
    with pytest.raises(InvariantBroken, match="KeyError"):  # refused safely, still a finding
        world.check(scenario, [failed])


def test_an_unproducible_header_breaks_the_invariant(world: FuzzWorld) -> None:
    scenario, decision = _accepted_resident(world)
    first = replace(decision.outputs[0], headers=(("id-\ud800", b"x"),))
    with pytest.raises(UnicodeEncodeError):
        world.check(scenario, [replace(decision, outputs=(first, *decision.outputs[1:]))])


def test_inputs_too_short_or_not_sealable_stand_for_nothing(world: FuzzWorld) -> None:
    assert world.scenario(b"") is None
    assert world.scenario(b"\x00") is None
    assert world.scenario(bytes([Mode.RESEALED, 0]) + b"not json") is None
    assert world.scenario(bytes([Mode.RESEALED, 0]) + b'{"data": []}') is None


def test_replay_prints_each_decision(world: FuzzWorld, tmp_path: Path) -> None:
    seed = next(s for s in world.seeds() if s[0] == Mode.ANSWER)
    path = tmp_path / "input"
    path.write_bytes(seed)
    shown = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway.lab.fuzz", "--replay", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    # the request of each request type, then the answer
    assert [line.split()[:2] for line in shown] == [
        ["accepted", "vn.hcm.police.identity_verification_requested.v1"],
        ["accepted", "vn.hcm.police.residence_verification_requested.v1"],
        ["accepted", "vn.hcm.police.identity_verified.v1"],
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris has wheels for Linux and CPython <= 3.11 only (pyproject.toml)",
)
def test_a_short_campaign_runs_clean_and_grows_the_corpus(tmp_path: Path) -> None:
    """A bounded coverage-guided campaign: no crash, and mutations reach new branches."""
    corpus, crashes = tmp_path / "corpus", tmp_path / "crashes"
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "gateway.lab.fuzz",
            f"--seconds={CAMPAIGN_SECONDS}",
            f"--corpus={corpus}",
            f"--crashes={crashes}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=CAMPAIGN_SECONDS + 120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", done.stderr))
    print(
        f"fuzz: {stats['number_of_executed_units']} runs, {stats['average_exec_per_sec']}/s, "
        f"{stats['new_units_added']} new inputs"
    )
    assert int(stats["number_of_executed_units"]) > 1000
    assert int(stats["new_units_added"]) > 0
    assert not list(crashes.iterdir())
    assert any(not p.name.startswith("seed-") for p in corpus.iterdir())
