"""The progress bars that ``xgw demo`` and ``xgw bench`` draw on standard error."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bars(console: Console, label_width: int) -> Progress:
    """Bars with a bold label padded to ``label_width``, a done/total count and the time taken."""
    return Progress(
        TextColumn(f"[bold]{{task.description:<{label_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
