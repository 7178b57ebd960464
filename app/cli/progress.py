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
from types import TracebackType
from typing import Any, TextIO


class Progress(AbstractContextManager["Progress"]):
    """Silent progress; the base of the other two forms."""

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        """A one-off step (loading ITK, preparing a planning CT)."""
        yield

    def registered(
        self,
        index: int,
        total: int,
        label: str,
        *,
        seconds: float,
        itk_loaded_here: bool,
        status: str,
    ) -> None:
        """MVCT ``index`` of ``total`` is done."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


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

    def registered(
        self,
        index: int,
        total: int,
        label: str,
        *,
        seconds: float,
        itk_loaded_here: bool,
        status: str,
    ) -> None:
        from registration.elastix_run import itk_load_count

        paid = "paid the ITK load" if itk_loaded_here else "without the ITK load"
        self._line(
            f"MVCT {index}/{total} {label}: {status}, {seconds:.1f} s, {paid} "
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

    def registered(
        self,
        index: int,
        total: int,
        label: str,
        *,
        seconds: float,
        itk_loaded_here: bool,
        status: str,
    ) -> None:
        if self._task is None:
            self._task = self._bar.add_task("registering MVCTs", total=total)
        self._bar.update(self._task, completed=index, total=total)
        self._bar.console.print(f"MVCT {index}/{total} {label}: {status} ({seconds:.1f} s)")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
