"""Writes job outcomes in batches, and keeps them while the database is away.

Finished jobs hand their ``Transition`` to ``push``; one loop writes everything that
piled up with a single guarded statement, so under load one round trip acknowledges
hundreds of jobs and when idle a job is acknowledged at once. If the database is
unreachable the batch stays in memory and is written when it is back (the guard in
the statement makes a repeated write harmless). A batch that cannot be written for its
content (the database refuses it, or it cannot be encoded) is split to find the bad
outcome, which is written without its error text and meta; if even that fails it is
logged and dropped (that job stays ``executing`` until the orphan check or a rescue
returns it), the others are written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import psycopg

from ._engine import Engine
from ._outcomes import Transition, refused_error
from ._service import TRANSIENT, Service, _first_line, reconnect_delay

log = logging.getLogger("pgqueue.acker")
# An outcome the database refuses (its error text, its meta), or one whose meta cannot be
# encoded (json.dumps). Anything else is a bug of pgqueue's and ends the acker loudly.
_UNWRITABLE = (psycopg.Error, TypeError, ValueError, RecursionError)


class Acker(Service):
    name = "acker"
    #: Seconds an outcome waits for a producer's claim to carry it before the acker
    #: writes it alone. Short: it only has to cover the claim that is about to start.
    carry_window = 0.002

    def __init__(
        self, engine: Engine, *, max_batch: int = 5000, on_db_error: object = None
    ) -> None:
        super().__init__()
        self.engine = engine
        self.max_batch = max_batch
        self._buffer: list[Transition] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_db_error = on_db_error
        self._writing = False
        self._lent = 0
        self._lent_ids: set[int] = set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def pending_ids(self) -> set[int]:
        """Jobs whose outcome is decided here but not yet written (still executing there)."""
        return {t.id for t in self._buffer} | self._lent_ids

    def push(self, transition: Transition) -> None:
        self._buffer.append(transition)
        self._idle.clear()
        self.wake()

    def take(self, limit: int) -> list[Transition]:
        """Hand up to ``limit`` plain completions to a producer, to write with its next
        claim (the claim statement takes no other outcome; those stay here)."""
        if self._writing or not self._buffer:
            return []
        batch: list[Transition] = []
        rest: list[Transition] = []
        for i, t in enumerate(self._buffer):
            if len(batch) == limit:  # after an outage the buffer can hold thousands
                rest += self._buffer[i:]
                break
            (batch if t.plain_completion else rest).append(t)
        if not batch:
            return []
        self._buffer[:] = rest
        self._lent += len(batch)
        self._lent_ids.update(t.id for t in batch)
        return batch

    def settle(self, batch: list[Transition], written: bool) -> None:
        """A producer reports on a batch it took: written, or to be written again here."""
        self._lent -= len(batch)
        self._lent_ids.difference_update(t.id for t in batch)
        if not written:
            # At the end: the acker may be writing the front of the buffer right now.
            self._buffer.extend(batch)
            self.wake()
        elif not self._buffer and not self._lent:
            self._idle.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every pushed outcome is written; False if ``timeout`` passed first."""
        if not self.running and self._buffer:
            await self.start()
        self.wake()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        failures = 0
        while True:
            if not self._buffer:
                if not self._lent:
                    self._idle.set()
                if self._stopping and not self._lent:
                    return
                await self.sleep(None)
                continue
            if not self._stopping and not failures:
                # Give the producers a moment to carry these with their next claim.
                await asyncio.sleep(self.carry_window)
                if not self._buffer:
                    continue
            batch = self._buffer[: self.max_batch]
            self._writing = True
            try:
                await self._write(batch)
            except TRANSIENT as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "cannot write %d job outcome(s) (%s); keeping them and retrying",
                        len(self._buffer),
                        _first_line(exc),
                    )
                    if callable(self._on_db_error):
                        self._on_db_error()
                if self._stopping and failures > 3:
                    # The node is leaving; what is still here will be rescued later.
                    log.error(
                        "giving up on %d unwritten job outcome(s) at shutdown", len(self._buffer)
                    )
                    self._idle.set()
                    return
                await self.sleep(reconnect_delay(failures))
                continue
            finally:
                self._writing = False
            if failures:
                log.info("job outcomes written again after %d failed tries", failures)
                failures = 0
            del self._buffer[: len(batch)]

    async def _write(self, batch: Sequence[Transition]) -> None:
        try:
            await self.engine.ack_jobs(batch)
        except TRANSIENT:
            raise
        except _UNWRITABLE as exc:
            if len(batch) > 1:
                mid = len(batch) // 2
                await self._write(batch[:mid])
                await self._write(batch[mid:])
                return
            # This one outcome cannot be written (the database refused its error text or
            # meta, or its meta cannot be encoded): write the same state with a plain
            # error instead, so the job does not stay executing. Never let it end the
            # acker: every later outcome of this node would wait behind it.
            t = batch[0]
            log.error("outcome %s of job %s cannot be written (%s); writing it without its "
                      "details", t.state, t.id, _first_line(exc))  # fmt: skip
            plain = t._replace(meta=None, error=None if t.error is None else refused_error(t, exc))
            try:
                await self.engine.ack_jobs([plain])
            except TRANSIENT:
                raise
            except _UNWRITABLE as again:
                log.error("dropping outcome %s of job %s: %s", t.state, t.id, _first_line(again))
