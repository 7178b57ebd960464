"""A bounded pool of warm registration worker processes with planning-cache affinity.

Each slot is a one-process ``ProcessPoolExecutor`` (spawned, never forked from the threaded web
process) that imports the engine when it starts. The pool knows which prepared planning images
each worker holds, so a job goes to a free worker that already has its planning CT when there is
one. A slot runs one task at a time.

A watchdog thread checks the slots every :data:`WATCH_S` seconds: a free slot whose process died
(killed, out of memory) is restarted in the background, so the other workers keep serving and
the replacement warms up (loads ITK, ~20-40 s here) before a job needs it. The service is ready
(:meth:`WorkerPool.can_take_job`, ``/readyz``) while at least one warm worker process is alive.

A new course's planning CT is prepared in a free warm worker (:meth:`WorkerPool.prepare_planning`)
so that the course's first fraction finds it cached there like every later fraction; that worker
also writes its prepared file, which the other workers load (:mod:`registration.prepared_file`).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

from app.jobs import task as worker
from app.jobs.task import PreparePlanningTask, RegistrationTask, TaskOutcome

log = logging.getLogger(__name__)
#: How often the watchdog looks for dead worker processes, seconds.
WATCH_S = 0.5


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

    @property
    def alive(self) -> bool:
        """The slot's process exists and its executor is usable (False after a crash)."""
        executor = self.executor
        if executor is None or self.broken or getattr(executor, "_broken", False):
            return False
        processes = getattr(executor, "_processes", None) or {}
        return all(process.is_alive() for process in processes.values())


class WorkerPool:
    """``workers`` warm processes; :meth:`try_submit` gives each process one task at a time."""

    def __init__(self, workers: int, planning_cache_size: int) -> None:
        self.slots = [WorkerSlot(i, planning_cache_size) for i in range(workers)]
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.started = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self.started:
                return
            for slot in self.slots:
                slot.start()
            self.started = True
            self._stop.clear()
            self._watchdog = threading.Thread(
                target=self._watch, name="mvct-guide-worker-watchdog", daemon=True
            )
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            try:
                self.replace_dead_workers()
            except RuntimeError as exc:  # no new processes once the interpreter is exiting
                if "interpreter shutdown" in str(exc):
                    return
                log.exception("could not restart a registration worker; trying again")

    def replace_dead_workers(self) -> int:
        """Restart every free slot whose process died; how many were restarted."""
        restarted = 0
        with self._lock:
            if not self.started:
                return 0
            for slot in self.slots:
                if not slot.busy and slot.executor is not None and not slot.alive:
                    slot.restart()
                    restarted += 1
        return restarted

    def can_take_job(self) -> bool:
        """Ready: at least one worker process is alive and warm (has loaded ITK)."""
        with self._lock:
            return self.started and any(s.warm and s.alive for s in self.slots)

    def warm_alive(self) -> int:
        """How many worker processes are alive and warm."""
        with self._lock:
            return sum(1 for s in self.slots if s.warm and s.alive) if self.started else 0

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

    def prepare_planning(self, task: PreparePlanningTask) -> Future[TaskOutcome] | None:
        """Have a free warm worker prepare a planning CT and write its prepared file; None when
        none could take it now (then a later fraction prepares it).

        A worker holding the planning CT already is asked (it only writes the file if missing);
        when that one is busy, nothing is done. Otherwise the free warm worker holding the fewest.
        """
        with self._lock:
            if not self.started:
                return None
            ready = [s for s in self.slots if not s.busy and s.warm and s.alive]
            if any(task.planning_sha256 in s.cached_plannings for s in self.slots):
                ready = [s for s in ready if task.planning_sha256 in s.cached_plannings]
            if not ready:
                return None
            slot = min(ready, key=lambda s: len(s.cached_plannings))
            slot.busy = True
            assert slot.executor is not None
            try:
                future = slot.executor.submit(worker.prepare, task)
            except RuntimeError:  # the executor broke meanwhile: the watchdog restarts it
                slot.busy = False
                slot.broken = True
                return None
        future.add_done_callback(lambda f, s=slot: self._on_done(s, f))  # type: ignore[misc]
        future.add_done_callback(_log_preparation)
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
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(5 * WATCH_S)
            self._watchdog = None
        with self._lock:
            for slot in self.slots:
                if slot.executor is not None:
                    slot.executor.shutdown(wait=True, cancel_futures=True)
                    slot.executor = None
            self.started = False


def _log_preparation(future: Future[TaskOutcome]) -> None:
    if future.cancelled() or future.exception() is not None:
        return  # the worker died: the watchdog says so
    outcome = future.result()
    if outcome.kind != "ok":
        log.warning("a planning CT was not prepared in the background: %s", outcome.message)
    elif outcome.message:
        log.info("planning CT prepared (from %s): %s", outcome.planning_source, outcome.message)
