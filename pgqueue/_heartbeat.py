"""A node's heartbeat: proof of life, and the moment it re-reads what others decided.

Every ``interval`` seconds the node renews its row in ``pgqueue_nodes`` (rescue treats
a node whose row expired as dead), re-reads the persisted queue controls (pause, scale)
and checks that every job it runs is still its own — a job cancelled by an operator, or
rescued while this node was cut off, is stopped here even if its notification was lost.
It also tracks since when the database has been reachable without interruption, which
the rescuer needs before it may call other nodes dead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ._coordination import Coordination, QueueControl
from ._job import Job
from ._service import IntervalService

log = logging.getLogger("pgqueue.node")


class Heartbeat(IntervalService):
    name = "heartbeat"

    def __init__(
        self,
        coordination: Coordination,
        *,
        node: str,
        interval: float,
        expiry: float,
        queues: Callable[[], Mapping[str, int]],
        running_jobs: Callable[[], Sequence[Job]],
        pending: Callable[[], set[int]],
        oldest_claim: Callable[[], float | None],
        on_controls: Callable[[dict[str, QueueControl]], None],
        on_lost: Callable[[dict[int, int]], None],
        on_orphans: Callable[[dict[int, int]], Awaitable[None]],
    ) -> None:
        super().__init__()
        if not 0 < interval < expiry:
            raise ValueError(
                f"heartbeat interval ({interval} s) must be shorter than its expiry ({expiry} s)"
            )
        self.coordination = coordination
        self.node = node
        self.interval = interval
        self.expiry = expiry
        self.queues = queues
        self.running_jobs = running_jobs
        self.pending = pending
        self.oldest_claim = oldest_claim
        self._checked_at: float | None = None
        self.on_controls = on_controls
        self.on_lost = on_lost
        self.on_orphans = on_orphans
        self.healthy_since: float | None = time.monotonic()
        self._suspects: dict[int, int] = {}

    def on_failure(self) -> None:
        self.healthy_since = None

    def on_recovery(self) -> None:
        self.healthy_since = time.monotonic()

    def retry_delay(self, failures: int) -> float:
        # Liveness is the whole point: never back off beyond one interval.
        return min(super().retry_delay(failures), self.interval)

    def settled(self, seconds: float) -> bool:
        """True when the database has been reachable for the last ``seconds`` seconds."""
        return self.healthy_since is not None and time.monotonic() - self.healthy_since >= seconds

    async def tick(self) -> None:
        was_alive = await self.coordination.heartbeat(self.node, self.queues(), self.expiry)
        if not was_alive:
            log.warning(
                "node %s had stopped heartbeating for longer than %g s; checking its jobs",
                self.node,
                self.expiry,
            )
        await self.check()

    async def check(self) -> None:
        """Re-read queue controls, drop jobs no longer ours, hand back ones we never got."""
        self.on_controls(await self.coordination.queue_controls())
        # id → attempt: while the answer was on its way, a lost attempt may have ended
        # and a newer one of the same job been claimed here; that one is ours to run.
        lost = await self.coordination.lost_jobs(self.node, self.running_jobs())
        if lost:
            self.on_lost(lost)
        # A claim whose reply died with its connection left jobs executing in our name
        # that we do not run. A job seen so at two checks in a row is one, unless a claim
        # that began before the first of them had read the database is still waiting for
        # its reply: that claim may be the one that made it. So the time that counts is
        # when the read returned (a claim begun while it ran may have committed before
        # it), and the jobs we know of are taken just before the read.
        previous = self._checked_at
        oldest = self.oldest_claim()
        if oldest is not None and (previous is None or oldest <= previous):
            self._suspects = {}
            self._checked_at = time.monotonic()
            return
        known = {j.id for j in self.running_jobs()} | self.pending()
        executing = await self.coordination.node_executing_jobs(self.node)
        self._checked_at = time.monotonic()
        orphans = {i: a for i, a in executing.items() if i not in known}
        confirmed = {i: a for i, a in orphans.items() if self._suspects.get(i) == a}
        self._suspects = {i: a for i, a in orphans.items() if i not in confirmed}
        if confirmed:
            await self.on_orphans(confirmed)
