"""A bounded pool of warm registration worker processes with planning-cache affinity.

Each slot is a one-process ``ProcessPoolExecutor`` (spawned, never forked from the threaded web
process) that imports the engine when it starts. The pool knows which prepared planning images
each worker holds, so a job goes to a free worker that already has its planning CT when there is
one. A slot runs one task at a time; a slot whose process died is restarted before its next task.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

from app.jobs import task as worker
from app.jobs.task import RegistrationTask, TaskOutcome

log = logging.getLogger(__name__)


class WorkerSlot:
    def __init__(self, index: int, planning_cache_size: int) -> None:
        self.index = index
        self._cache_size = planning_cache_size
        self.busy = False
        self.cached_plannings: tuple[str, ...] = ()
        self.executor: ProcessPoolExecutor | None = None
        self.warm_future: Future[int] | None = None
        self.broken = False

    def start(self) -> None:
        self.executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.initialize,
            initargs=(self._cache_size,),
        )
        self.cached_plannings = ()
        self.broken = False
        self.warm_future = self.executor.submit(worker.warm_up)

    def restart(self) -> None:
        log.warning("restarting registration worker %d", self.index)
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.start()

    @property
    def warm(self) -> bool:
        f = self.warm_future
        return f is not None and f.done() and not f.cancelled() and f.exception() is None

    @property
    def pid(self) -> int | None:
        return self.warm_future.result() if self.warm else None  # type: ignore[union-attr]


class WorkerPool:
    """``workers`` warm processes; :meth:`try_submit` gives each process one task at a time."""

    def __init__(self, workers: int, planning_cache_size: int) -> None:
        self.slots = [WorkerSlot(i, planning_cache_size) for i in range(workers)]
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.started = False

    def start(self) -> None:
        with self._lock:
            if self.started:
                return
            for slot in self.slots:
                slot.start()
            self.started = True

    def is_warm(self) -> bool:
        return self.started and all(slot.warm for slot in self.slots)

    def wait_warm(self, timeout_s: float) -> bool:
        for slot in self.slots:
            if slot.warm_future is None:
                return False
            try:
                slot.warm_future.result(timeout=timeout_s)
            except Exception:
                return False
        return True

    def worker_pids(self) -> list[int | None]:
        return [slot.pid for slot in self.slots]

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` is called (from a pool thread) whenever a slot becomes free."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def has_free_slot(self) -> bool:
        with self._lock:
            return self.started and any(not s.busy for s in self.slots)

    def try_submit(self, task: RegistrationTask) -> Future[TaskOutcome] | None:
        """Run ``task`` on a free worker (preferring one holding its planning); None if all busy."""
        with self._lock:
            if not self.started:
                return None
            free = [s for s in self.slots if not s.busy]
            if not free:
                return None
            # a warm worker holding the planning CT, else a warm one with the fewest cached
            free.sort(key=lambda s: (s.broken or not s.warm, len(s.cached_plannings)))
            cached = [s for s in free if task.planning_sha256 in s.cached_plannings]
            slot = (cached or free)[0]
            if slot.broken:
                slot.restart()
            slot.busy = True
            assert slot.executor is not None
            try:
                future = slot.executor.submit(worker.run_registration, task)
            except RuntimeError:  # the executor broke between two tasks
                slot.restart()
                future = slot.executor.submit(worker.run_registration, task)
        future.add_done_callback(lambda f, s=slot: self._on_done(s, f))  # type: ignore[misc]
        return future

    def _on_done(self, slot: WorkerSlot, future: Future[TaskOutcome]) -> None:
        with self._lock:
            slot.busy = False
            exc = None if future.cancelled() else future.exception()
            if future.cancelled() or exc is not None:
                slot.broken = True
                slot.cached_plannings = ()
            else:
                slot.cached_plannings = future.result().cached_plannings
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def shutdown(self) -> None:
        with self._lock:
            for slot in self.slots:
                if slot.executor is not None:
                    slot.executor.shutdown(wait=True, cancel_futures=True)
                    slot.executor = None
            self.started = False
