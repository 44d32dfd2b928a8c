"""Tests through the real embedded Kafka broker (and the processes around it): all integration.

``pytest tests/gateway`` (or ``make unit``) is the fast run without them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``integration``, whatever its own module says."""
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
