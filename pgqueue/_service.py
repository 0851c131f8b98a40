"""One lifecycle for every background piece of a node.

A service is constructed with validated options, started with ``start()`` and stopped
with ``stop()``; both are idempotent, so shutdown paths can call them without keeping
score. ``IntervalService`` runs ``tick()`` on a jittered interval and backs off
exponentially (with jitter) while the database is unreachable, logging once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import psycopg

from ._backoff import backoff_seconds

log = logging.getLogger("pgqueue.node")

# Errors that mean "the database is (for now) out of reach": retry, never crash.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)


def reconnect_delay(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` consecutive failed database calls."""
    return backoff_seconds(
        max(failures, 1), base=0.1, factor=2.0, cap=10.0, jitter=0.5, rng=rng or random
    )


def jittered(interval: float, rng: random.Random | None = None) -> float:
    """``interval`` ±10 %, so the nodes of a cluster do not tick in lockstep."""
    return interval * (0.9 + 0.2 * (rng or random).random())


class Service:
    """A named asyncio task with idempotent start/stop."""

    name = "service"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wakeup: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._guarded(), name=f"pgqueue-{self.name}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to finish, wait up to ``timeout`` s, then cancel it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self.wake()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def sleep(self, seconds: float | None) -> bool:
        """Sleep until ``seconds`` pass or someone calls ``wake()``; True if woken."""
        event = self._wakeup
        assert event is not None
        if event.is_set():
            event.clear()
            return True
        try:
            if seconds is None:
                await event.wait()
            else:
                async with asyncio.timeout(seconds):
                    await event.wait()
        except TimeoutError:
            return False
        event.clear()
        return True

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` (a backoff): only stopping cuts it short, not a wake-up."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await self.sleep(left)

    async def _guarded(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pgqueue %s stopped on an unexpected error", self.name)

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class IntervalService(Service):
    """Calls ``tick()`` every ``interval`` seconds (jittered) until stopped."""

    interval = 1.0

    def on_failure(self) -> None:
        """Called at the first tick of a streak that fails for want of the database."""

    def on_recovery(self) -> None:
        """Called when a tick succeeds after failures."""

    def retry_delay(self, failures: int) -> float:
        """Seconds before the next try after ``failures`` failed ticks in a row."""
        return reconnect_delay(failures)

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self.tick()
            except TRANSIENT as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "pgqueue %s: database unavailable (%s); retrying",
                        self.name,
                        _first_line(exc),
                    )
                    self.on_failure()
                await self.pause(self.retry_delay(failures))
                continue
            except Exception:
                log.exception("pgqueue %s: tick failed", self.name)
            else:
                if failures:
                    log.info("pgqueue %s: database reachable again", self.name)
                    self.on_recovery()
                failures = 0
            await self.sleep(jittered(self.interval))

    async def tick(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
