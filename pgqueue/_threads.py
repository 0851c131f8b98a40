"""The threads sync jobs run on, with one event-loop wake-up per batch of results.

``loop.run_in_executor`` costs a future pair and a wake-up of the event loop (a write to
its self-pipe, an epoll round) per job: for short sync jobs that is most of the work.
Here finished results are collected and handed to the loop by one callback per batch,
and threads are started only as concurrency demands. Threads are daemons: a sync job
that ignores a stop request cannot keep the process alive after the node has handed
its job back.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class JobThreads:
    """Runs ``fn(arg)`` on up to ``size`` threads; results come back as asyncio futures."""

    def __init__(self, size: int, name: str = "pgqueue-job") -> None:
        if size < 1:
            raise ValueError(f"a thread pool needs at least one thread, got {size}")
        self.size = size
        self.name = name
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: collections.deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = (
            collections.deque()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("the job threads are shut down")
        self._loop = loop
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle == 0 and len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            elif self._idle:
                self._idle -= 1
        self._inbox.put((fn, arg, future))
        return future

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            fn, arg, future = item
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # a job's SystemExit too: it is the job's failure
                result, error = None, exc
            self._done.append((future, result, error))
            with self._lock:
                self._idle += 1
                wake = not self._drain_scheduled
                self._drain_scheduled = True
            if wake and self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop closed meanwhile
                    return

    def _drain(self) -> None:
        with self._lock:
            self._drain_scheduled = False
        while self._done:
            future, result, error = self._done.popleft()
            if future.done():  # cancelled: timed out, cancelled, or the node stopped
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    @property
    def alive(self) -> int:
        """Threads still running a job (after shutdown: the ones that ignored it)."""
        return sum(t.is_alive() for t in self._threads)

    def shutdown(self) -> None:
        """Let idle threads exit; a thread still in a job exits when it returns."""
        self._closed = True
        for _ in self._threads:
            self._inbox.put(_STOP)
