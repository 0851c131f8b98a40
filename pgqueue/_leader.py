"""Leader election by lease, and the duties only the leader performs.

The lease is a row with an expiry. Its owner renews it every third of its time to live;
another node takes it only once it has expired; a stopping leader deletes it so another
takes over at the next renewal. Leadership is judged locally against the last renewal
the database confirmed, so a leader cut off from the database stops its duties when
its lease runs out, before anyone else can take it.

Duties (``LeaderDuty`` subclasses) check ``is_leader()`` before every step: rescue of
jobs whose node died, pruning of old finished jobs, vacuuming the jobs table, and cron.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from ._coordination import FINAL_STATES, Coordination
from ._cron import DEFAULT_GRACE, Cron, due_slots
from ._heartbeat import Heartbeat
from ._service import IntervalService

log = logging.getLogger("pgqueue.leader")


class Leader(IntervalService):
    name = "leader"

    def __init__(self, coordination: Coordination, *, node: str, ttl: float) -> None:
        super().__init__()
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl}")
        self.coordination = coordination
        self.node = node
        self.ttl = ttl
        self.interval = ttl / 3
        self._valid_until = 0.0
        self.terms = 0  # how many times this node became leader

    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    async def tick(self) -> None:
        asked = time.monotonic()
        try:
            held = await self.coordination.take_leadership(self.node, self.ttl)
        except Exception:
            self._lose("cannot reach the database")
            raise
        if held:
            if not self.is_leader():
                self.terms += 1
                log.info("node %s is now the leader", self.node)
            # Counted from before the request: the database's expiry is later still.
            self._valid_until = asked + self.ttl
        else:
            self._lose("another node holds the lease")

    def _lose(self, why: str) -> None:
        if self.is_leader():
            log.warning("node %s is no longer the leader: %s", self.node, why)
        self._valid_until = 0.0

    async def stop(self, timeout: float = 5.0) -> None:
        was_leader = self.is_leader()
        self._valid_until = 0.0
        await super().stop(timeout)
        if was_leader:
            try:
                await self.coordination.release_leadership(self.node)
                log.info("node %s released the leadership", self.node)
            except Exception as exc:  # the lease then simply expires
                log.warning(
                    "could not release the leadership (%s); it expires in %g s", exc, self.ttl
                )


class LeaderDuty(IntervalService):
    def __init__(self, leader: Leader, coordination: Coordination, *, interval: float) -> None:
        super().__init__()
        self.leader = leader
        self.coordination = coordination
        self.interval = interval

    async def tick(self) -> None:
        if self.leader.is_leader():
            await self.duty()

    async def duty(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Rescuer(LeaderDuty):
    """Returns jobs of dead nodes to ``available`` (or ``discarded``)."""

    name = "rescuer"

    def __init__(
        self, leader: Leader, coordination: Coordination, *, interval: float, heartbeat: Heartbeat
    ) -> None:
        super().__init__(leader, coordination, interval=interval)
        self.heartbeat = heartbeat
        self.rescued = 0

    async def duty(self) -> None:
        # Only call a node dead after this node has itself seen the database up for a
        # whole expiry period: after an outage every live node gets time to heartbeat.
        if not self.heartbeat.settled(self.heartbeat.expiry):
            return
        while self.leader.is_leader():
            rows = await self.coordination.rescue_jobs()
            for job_id, queue, state in rows:
                log.warning(
                    "rescued job %s of queue %s from a dead node: now %s", job_id, queue, state
                )
            self.rescued += len(rows)
            if len(rows) < 1000:
                return


DEFAULT_PRUNE_AGES: dict[str, float] = {
    "completed": 24 * 3600.0,
    "cancelled": 7 * 24 * 3600.0,
    "discarded": 14 * 24 * 3600.0,
}


class Pruner(LeaderDuty):
    """Deletes finished jobs older than their state's age, a small batch at a time."""

    name = "pruner"

    def __init__(
        self,
        leader: Leader,
        coordination: Coordination,
        *,
        interval: float,
        ages: Mapping[str, float] | None = None,
        batch: int = 5000,
    ) -> None:
        super().__init__(leader, coordination, interval=interval)
        self.ages = {**DEFAULT_PRUNE_AGES, **(ages or {})}
        for state, age in self.ages.items():
            if state not in FINAL_STATES or not age > 0:
                raise ValueError(
                    f"prune ages are seconds > 0 for {', '.join(FINAL_STATES)}; got {state}={age}"
                )
        self.batch = batch
        self.pruned = 0

    async def duty(self) -> None:
        for state, age in self.ages.items():
            while self.leader.is_leader() and not self._stopping:
                deleted = await self.coordination.prune_jobs(state, age, self.batch)
                self.pruned += deleted
                if deleted < self.batch:
                    break
        if self.leader.is_leader():
            await self.coordination.prune_bookkeeping(max(self.ages.values()))


class Vacuumer(LeaderDuty):
    """Vacuums the jobs table when dead rows pile up faster than autovacuum clears them.

    Every claimed job leaves a dead entry at the head of the fetch index until the table
    is vacuumed, and every claim steps over all of them: with autovacuum off, a worker
    draining 1,000,000 jobs slowed from 11,700 to 4,800 jobs/s within 80 s, its claim
    reading 3,000 index pages for ten rows. Autovacuum, when on, wakes once a minute at
    best; this looks every ``interval`` and vacuums (and analyzes) once the dead rows
    reach ``min_dead`` and a tenth of the live ones, so a big table is not rescanned for
    a little churn. A role that does not own the table is told once, and looked at
    again every interval, so that ownership granted later takes effect without a restart.
    """

    name = "vacuum"
    fraction = 0.1

    def __init__(
        self, leader: Leader, coordination: Coordination, *, interval: float, min_dead: int
    ) -> None:
        super().__init__(leader, coordination, interval=interval)
        self.min_dead = min_dead
        self.vacuums = 0
        self._refused = False  # warned that this role may not vacuum; not warned again

    async def duty(self) -> None:
        dead, live, allowed = await self.coordination.dead_rows()
        if dead < max(self.min_dead, self.fraction * live):
            return
        if not allowed:
            if not self._refused:
                self._refused = True
                log.warning(
                    "pgqueue_jobs has %d dead rows but this role does not own it, so it "
                    "cannot vacuum it; claims slow down until autovacuum runs",
                    dead,
                )
            return
        if self._refused:
            self._refused = False
            log.info("this role may vacuum pgqueue_jobs again")
        started = time.monotonic()
        await self.coordination.vacuum_jobs()
        self.vacuums += 1
        log.info("vacuumed pgqueue_jobs (%d dead rows) in %.1f s", dead, time.monotonic() - started)


class Scheduler(LeaderDuty):
    """Cron: inserts the job of every due slot; the database keeps slots unique."""

    name = "cron"

    def __init__(
        self,
        leader: Leader,
        coordination: Coordination,
        *,
        entries: list[Cron],
        interval: float = 1.0,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(leader, coordination, interval=interval)
        self.entries = entries
        self.grace = grace
        self._last: dict[str, object] | None = None
        self._term = -1
        self.inserted = 0

    async def duty(self) -> None:
        if not self.entries:
            return
        if self._last is None or self._term != self.leader.terms:
            # A new term: start from what the database says was inserted last.
            self._last = dict(
                await self.coordination.last_cron_slots([e.name for e in self.entries])
            )
            self._term = self.leader.terms
        now = await self.coordination.db_now()
        for entry in self.entries:
            for slot in due_slots(entry, now, self._last.get(entry.name), self.grace):  # type: ignore[arg-type]
                if not self.leader.is_leader():
                    return
                job_id = await self.coordination.insert_cron_job(entry, slot)
                if job_id is not None:
                    self.inserted += 1
                    log.info(
                        "cron %s: slot %s inserted job %s", entry.name, slot.isoformat(), job_id
                    )
                self._last[entry.name] = slot
