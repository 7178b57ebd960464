"""Progress of a batch on stderr: the one-off load, then each registration.

Three forms, chosen by :func:`progress_for`: a live ``rich`` display when stderr is a terminal,
plain lines with ``--verbose`` (for logs and tests), and nothing otherwise, so that stdout (the
results) and stderr (errors) stay clean for scripts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    """MVCT ``index`` of ``total`` is done: its status (trusted, NOT trusted, not registered: …)
    after ``seconds``, of which the ITK load when ``itk_loaded_here``."""

    index: int
    total: int
    label: str
    seconds: float
    itk_loaded_here: bool
    status: str

    @property
    def headline(self) -> str:
        return f"MVCT {self.index}/{self.total} {self.label}: {self.status}"


class Progress(AbstractContextManager["Progress"]):
    """Silent progress; the base of the other two forms."""

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        """A one-off step (loading ITK, preparing a planning CT)."""
        yield

    def registered(self, done: Registered) -> None:
        """One more MVCT is done."""

    def close(self) -> None:
        """The batch is over (on leaving the ``with`` block, even on an error)."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LineProgress(Progress):
    """One plain line per event (``--verbose`` when stderr is not a terminal)."""

    def __init__(self, stream: TextIO, prog: str) -> None:
        self._stream = stream
        self._prog = prog

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self._line(f"{text}: {time.perf_counter() - started:.1f} s")

    def registered(self, done: Registered) -> None:
        from registration.elastix_run import itk_load_count

        paid = "paid the ITK load" if done.itk_loaded_here else "without the ITK load"
        self._line(
            f"{done.headline}, {done.seconds:.1f} s, {paid} "
            f"(ITK loads in this process: {itk_load_count()})"
        )

    def _line(self, text: str) -> None:
        print(f"{self._prog}: {text}", file=self._stream, flush=True)


class RichProgress(Progress):
    """A live display on a terminal (``rich``): a spinner per step, a bar over the MVCTs."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichBar

        self._console = console
        self._bar = RichBar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: Any = None
        self._bar.start()

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        task = self._bar.add_task(text, total=1)
        yield
        self._bar.update(task, completed=1)

    def registered(self, done: Registered) -> None:
        if self._task is None:
            self._task = self._bar.add_task("registering MVCTs", total=done.total)
        self._bar.update(self._task, completed=done.index, total=done.total)
        self._bar.console.print(f"{done.headline} ({done.seconds:.1f} s)")

    def close(self) -> None:
        self._bar.stop()


def progress_for(verbose: bool, prog: str = "mvct-guide") -> Progress:
    """Rich on a terminal, plain lines with ``verbose``, else silent."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        return RichProgress(console)
    if verbose:
        return LineProgress(sys.stderr, prog)
    return Progress()
