"""Reason codes: stable snake_case strings, documented in one table."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.ops.docs import reason_table
from gateway.reasons import ReasonCode

DOC = Path(__file__).parents[2] / "docs" / "reason-codes.md"


def test_codes_are_snake_case_and_described() -> None:
    """Every code is a snake_case string with a one-sentence description."""
    for code in ReasonCode:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code.value)
        assert code.description.endswith(".")


def test_documentation_table_matches_the_enum() -> None:
    """docs/reason-codes.md carries exactly the table generated from the enum."""
    assert reason_table() in DOC.read_text(encoding="utf-8")
