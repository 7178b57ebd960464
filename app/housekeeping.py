"""Chores a running service repeats in the background: one thread, each chore at its own period.

:mod:`app.lifecycle` starts a :class:`Housekeeper` after the database is migrated and stops it
first at shutdown. The chores (set up there) are the sign-in audit flush
(:func:`app.services.accounts.flush_sign_in_audit`, every ``sign_in_audit_flush_s``) and the disk
sweeps of the DICOM inbox and the planning cache (every ``disk_sweep_s``). Each chore runs once
as soon as the thread starts, then every period after it ended. A chore that raises (a database
outage) is logged and tried again at its next period; it never ends the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chore:
    name: str  #: how the log names it
    period_s: float
    run: Callable[[], object]


class Housekeeper:
    """One daemon thread that runs ``chores`` (see the module docstring)."""

    def __init__(self, chores: Sequence[Chore]) -> None:
        self._chores = tuple(chores)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="mvct-guide-housekeeping", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the chore running now (if any) has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        due = {chore.name: time.monotonic() for chore in self._chores}
        while not self._stop.is_set():
            for chore in self._chores:
                if self._stop.is_set():
                    return
                if time.monotonic() >= due[chore.name]:
                    self._run(chore)
                    due[chore.name] = time.monotonic() + chore.period_s
            if due:
                self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))
            else:
                self._stop.wait()

    def _run(self, chore: Chore) -> None:
        try:
            chore.run()
        except Exception:
            if chore.name not in self._failing:  # one traceback per outage, not one per period
                log.exception("%s failed; trying again every %g s", chore.name, chore.period_s)
            self._failing.add(chore.name)
            return
        if chore.name in self._failing:
            self._failing.discard(chore.name)
            log.warning("%s works again", chore.name)
