"""A run's progress as a bar on a terminal (rich), and nothing when the output goes to a file or a pipe."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from leadpulse.core.runtime.run import NO_PROGRESS
from leadpulse.core.runtime.run import Progress as RunProgress


class TerminalProgress:
    """One line per step (``acme: pull contacts  12,300 records  0:00:41``), redrawn in place."""

    def __init__(self, bar: Progress, tenant: str) -> None:
        self._bar, self._tenant = bar, tenant
        self._task: TaskID | None = None

    def step(self, name: str) -> None:
        if self._task is not None:
            self._bar.stop_task(self._task)
        self._task = self._bar.add_task(f"{self._tenant}: {name}", total=None)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)


@contextlib.contextmanager
def terminal_progress(console: Console, tenant: str) -> Iterator[RunProgress]:
    """A progress display on `console` while the block runs, if it is a terminal; else no display at all."""
    if not console.is_terminal:
        yield NO_PROGRESS
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=None),
               TextColumn("{task.completed:,.0f} done"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        yield TerminalProgress(bar, tenant)
