"""The documentation stays true to the code it describes."""

from __future__ import annotations

from pathlib import Path

from gateway.settings import Settings

ROOT = Path(__file__).parents[1]


def test_every_setting_is_documented() -> None:
    """Each Settings field appears in docs/operations.md as its XGW_ variable."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [n for n in Settings.model_fields if f"`XGW_{n.upper()}`" not in text]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    """The README's first code block is exactly make demo and make test."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["make demo", "make test"]
