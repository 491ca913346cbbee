"""The action worker: one thread that carries out disruptive actions, in order, off the
evaluation.

A restart waits out its grace period (30 s is common) and a hook its timeout. Done inside
the evaluation they would hold up the next sample tick and the intake of kernel kills;
here the evaluator hands each firing (a restart and the notifications that report it) to
this thread and goes on. Jobs run one at a time, in the order they were decided, so two
rules never restart the same target at once; each job re-checks its target just before
acting.

:meth:`ActionWorker.stop` lets the job in progress finish (up to its own deadline) and
cancels the ones still waiting: their decisions are marked, never left half done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Job(Protocol):
    @property
    def deadline_s(self) -> float:
        """How long the job may take once started (the stop waits this long for it)."""

    def run(self) -> None: ...

    def cancel(self) -> None:
        """Sentinel stops before the job started: mark its decisions as not carried out."""


class ActionWorker:
    def __init__(self, name: str = "actions") -> None:
        self.name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._current: Job | None = None
        self._started_at: float | None = None
        self._stopping = threading.Event()
        self.failures = 0
        """Jobs that raised (a bug): logged with their traceback, the worker goes on."""

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: Job) -> None:
        if self._stopping.is_set():
            job.cancel()
            return
        self._queue.put(job)

    @property
    def waiting(self) -> int:
        """Jobs queued, not yet started."""
        return self._queue.qsize()

    @property
    def busy_for(self) -> float:
        """Seconds the job in progress has been running (0 when idle)."""
        started = self._started_at
        return 0.0 if started is None else time.monotonic() - started

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._stopping.is_set():
                job.cancel()
                continue
            self._current, self._started_at = job, time.monotonic()
            try:
                job.run()
            except Exception:
                self.failures += 1
                log.exception("%s: a job failed", self.name)
            finally:
                self._current, self._started_at = None, None

    def stop(self) -> None:
        """Finish the job in progress (waiting up to its deadline), cancel the rest."""
        self._stopping.set()
        current = self._current
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=(current.deadline_s if current is not None else 0) + 5)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
