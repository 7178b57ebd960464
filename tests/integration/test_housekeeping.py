"""The housekeeping thread: every chore at its own period, failures logged once, a prompt stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from app.housekeeping import Chore, Housekeeper


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_each_chore_runs_at_start_and_then_at_its_own_period() -> None:
    runs = {"often": 0, "rarely": 0}

    def count(name: str) -> Callable[[], None]:
        return lambda: runs.__setitem__(name, runs[name] + 1)

    keeper = Housekeeper(
        [Chore("often", 0.02, count("often")), Chore("rarely", 60, count("rarely"))]
    )
    keeper.start()
    try:
        assert wait_until(lambda: runs["often"] >= 5)
    finally:
        keeper.stop()
    assert runs["rarely"] == 1, "run once at start, not again within its 60 s period"


def test_a_failing_chore_is_logged_once_per_outage_and_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database outage must not end the thread nor write a traceback every period."""
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) <= 4:
            raise ConnectionError("database unreachable")

    keeper = Housekeeper([Chore("the flaky chore", 0.01, flaky)])
    with caplog.at_level(logging.WARNING, logger="app.housekeeping"):
        keeper.start()
        try:
            assert wait_until(lambda: len(calls) >= 6)
        finally:
            keeper.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "the flaky chore failed; trying again every 0.01 s",
        "the flaky chore works again",
    ]
    assert caplog.records[0].exc_info is not None


def test_stop_waits_for_the_running_chore_and_starts_no_other() -> None:
    started, release = threading.Event(), threading.Event()
    later: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)

    keeper = Housekeeper([Chore("slow", 60, slow), Chore("next", 60, lambda: later.append("run"))])
    keeper.start()
    assert started.wait(10)
    stopper = threading.Thread(target=keeper.stop)
    stopper.start()
    time.sleep(0.05)
    assert stopper.is_alive(), "stop waits for the chore that is running"
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert later == [], "no chore starts once stop was asked"
