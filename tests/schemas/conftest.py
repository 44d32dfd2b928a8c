"""Fixtures of the schema tests."""

from __future__ import annotations

import pytest

from schemas.police import ResidentRegistered
from tests.schemas.factories import make_resident


@pytest.fixture
def resident() -> ResidentRegistered:
    """A valid registration whose address is in the 2025 list (overrides the root fixture)."""
    return make_resident()
