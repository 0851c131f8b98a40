"""Run one claimed job and say what should happen to it next.

The steps, in order: find the registered worker (a row naming anything else fails
with ``UnknownWorker``), perform with the worker's timeout (async on the event loop,
sync on a thread), capture the result or exception, let ``decide`` turn it into a
``Transition``, and emit the events integrations listen to. Nothing a job does can
escape this function except the cancellation of the node itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from . import _events, _registry
from ._backoff import backoff_seconds
from ._errors import JobTimeout, UnknownWorker
from ._job import Job
from ._outcomes import Failure, Success, Transition, completed, decide
from ._threads import JobThreads, RaisedInThread
from ._worker import Worker

log = logging.getLogger("pgqueue.executor")

# Seconds between checks for overdue jobs: a timeout fires up to this much late.
WATCH_TICK = 0.05


class Executor:
    """Performs jobs for one node; sync jobs share its thread pool."""

    def __init__(self, node: str, threads: JobThreads) -> None:
        self.node = node
        self.threads = threads
        self._instances: dict[type[Worker], Worker] = {}
        self._deadlines: dict[asyncio.Task[object], Job] = {}
        self._watchdog: asyncio.Task[None] | None = None

    def _instance(self, cls: type[Worker]) -> Worker:
        worker = self._instances.get(cls)
        if worker is None:
            worker = self._instances[cls] = cls()
        return worker

    async def run(self, job: Job, task: asyncio.Task[Any] | None = None) -> Transition:
        """``task`` is the task running this call, when the caller has it at hand (the
        producer does); a job with a timeout needs it, and looking it up costs more."""
        started = time.perf_counter()
        _events.emit("job_start", job=job, node=self.node)
        cls = _registry.lookup(job.worker)
        worker: Worker | None = None
        if cls is None:
            outcome: Success | Failure = Failure(UnknownWorker(job.worker))
        else:
            try:
                worker = self._instance(cls)
            except Exception as exc:
                outcome = Failure.capture(exc)
            else:
                outcome = await self._perform(worker, cls, job, task)
        try:
            # Nearly every job: completed, without the clock and backoff decide takes.
            transition = completed(job, outcome) or decide(
                job, outcome, now=datetime.now(UTC), backoff=_safe_backoff(worker)
            )
        except Exception as exc:  # a result or exception that cannot even be described
            outcome = Failure.capture(exc)
            transition = decide(job, outcome, now=datetime.now(UTC), backoff=_safe_backoff(None))
        duration = time.perf_counter() - started
        if isinstance(outcome, Failure) and transition.error is not None:
            _events.emit(
                "job_exception",
                job=job,
                node=self.node,
                transition=transition,
                duration=duration,
                error=outcome.error,
                traceback=outcome.traceback,
            )
        _events.emit(
            "job_stop",
            job=job,
            node=self.node,
            transition=transition,
            duration=duration,
            outcome=transition.state,
        )
        return transition

    async def _perform(
        self, worker: Worker, cls: type[Worker], job: Job, task: asyncio.Task[Any] | None
    ) -> Success | Failure:
        timeout = cls.timeout
        # Only a job with a timeout needs its task (on 3.11 each lookup of the running
        # loop is a getpid system call: the producer passes the task it created).
        if timeout is None:
            task = None
        else:
            if task is None:
                task = asyncio.current_task()
            if task is not None:
                job.deadline = time.monotonic() + timeout
                self._watch(task, job)
        try:
            if cls.is_async:
                return Success(await worker.perform(job))  # type: ignore[misc]
            # A thread cannot be interrupted: on timeout or cancellation the job is asked
            # to stop (job.cancel_requested) and whatever it returns is ignored.
            return Success(await self.threads.submit(worker.perform, job))
        except asyncio.CancelledError:
            job.request_cancel()
            if job.timed_out and task is not None:
                task.uncancel()  # our own cancellation: the attempt failed, the node goes on
                return Failure(JobTimeout(timeout or 0.0))
            raise
        except RaisedInThread as exc:  # a sync job's own KeyboardInterrupt
            return Failure.capture(exc.__cause__ or exc)
        except (Exception, SystemExit) as exc:
            # SystemExit too: a job's sys.exit() is its failure. Let out of the task,
            # asyncio would re-raise it from the event loop and end the node.
            return Failure.capture(exc)
        finally:
            if task is not None:
                self._deadlines.pop(task, None)

    def _watch(self, task: asyncio.Task[object], job: Job) -> None:
        """Track ``job``'s deadline; one watchdog serves every running job.

        A timer per job (asyncio.timeout) costs more than the job itself for short jobs;
        a sweep every ``WATCH_TICK`` seconds cancels the overdue ones instead.
        """
        self._deadlines[task] = job
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(
                self._sweep(), name="pgqueue-timeouts"
            )

    async def _sweep(self) -> None:
        while self._deadlines:
            await asyncio.sleep(WATCH_TICK)
            now = time.monotonic()
            for task, job in list(self._deadlines.items()):
                if job.deadline is not None and now >= job.deadline and not job.timed_out:
                    job.timed_out = True
                    task.cancel()


def _safe_backoff(worker: Worker | None):
    """The worker's backoff, falling back to the default if the override misbehaves."""

    def backoff(job: Job) -> float:
        if worker is None:
            return backoff_seconds(job.attempt)
        try:
            return float(worker.backoff(job))
        except Exception:
            log.exception(
                "backoff() of %s failed for job %s; using the default", job.worker, job.id
            )
            return backoff_seconds(job.attempt)

    return backoff
