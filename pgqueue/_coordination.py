"""The database side of many nodes: heartbeats, the leader lease, rescue, pruning, cron
slots and queue controls. Part of the engine boundary: every statement is a named query
of ``pgqueue/sql/cluster.sql`` run on the node's pool of autocommit connections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ._cron import Cron
from ._engine import channel
from ._job import Job
from .sql import queries

FINAL_STATES = ("completed", "discarded", "cancelled")


@dataclass(frozen=True, slots=True)
class QueueControl:
    paused: bool = False
    concurrency: int | None = None


def control_channel(schema: str) -> str:
    """The channel that tells nodes to re-read queue controls or stop a cancelled job."""
    return f"{schema}.pgqueue_control"


class Coordination:
    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.q = queries(schema)
        self.channel = channel(schema)

    async def _rows(
        self, query: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    # ---- nodes --------------------------------------------------------------------

    async def register_node(self, node: str, queues: Mapping[str, int], expiry: float) -> None:
        await self._rows(
            self.q.register_node,
            {"node": node, "queues": json.dumps(dict(queues)), "expiry": expiry},
        )

    async def heartbeat(self, node: str, queues: Mapping[str, int], expiry: float) -> bool:
        """Renew this node's heartbeat; False if it had already expired (jobs may be gone)."""
        rows = await self._rows(
            self.q.heartbeat_node,
            {"node": node, "queues": json.dumps(dict(queues)), "expiry": expiry},
        )
        return bool(rows and rows[0][0])

    async def delete_node(self, node: str) -> None:
        await self._rows(self.q.delete_node, {"node": node})

    async def lost_jobs(self, node: str, jobs: Sequence[Job]) -> dict[int, int]:
        """id → attempt of the ``jobs`` (those attempts) that are no longer this node's to
        run (cancelled, rescued, gone)."""
        if not jobs:
            return {}
        rows = await self._rows(
            self.q.lost_jobs,
            {"node": node, "ids": [j.id for j in jobs], "attempts": [j.attempt for j in jobs]},
        )
        return dict(rows)

    async def node_executing_jobs(self, node: str) -> dict[int, int]:
        """id → attempt of the jobs the database says ``node`` is executing."""
        return dict(await self._rows(self.q.node_executing_jobs, {"node": node}))

    async def queue_controls(self) -> dict[str, QueueControl]:
        rows = await self._rows(self.q.queue_controls)
        return {name: QueueControl(paused, concurrency) for name, paused, concurrency, _ in rows}

    # ---- leadership ---------------------------------------------------------------

    async def take_leadership(self, node: str, ttl: float) -> bool:
        return bool(await self._rows(self.q.take_leadership, {"node": node, "ttl": ttl}))

    async def release_leadership(self, node: str) -> None:
        await self._rows(self.q.release_leadership, {"node": node})

    # ---- leader duties --------------------------------------------------------------

    async def rescue_jobs(self, limit: int = 1000) -> list[tuple[int, str, str]]:
        """Return jobs of dead nodes to available (or discard them); (id, queue, state)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q.rescue_jobs, {"limit": limit})
            rows = await cur.fetchall()
            queues = sorted({queue for _, queue, state in rows if state == "available"})
            if queues:
                await conn.execute(
                    self.q.notify_queues, {"channel": self.channel, "queues": queues}
                )
            return rows

    async def prune_jobs(self, state: str, age: float, limit: int) -> int:
        if state not in FINAL_STATES:
            raise ValueError(f"only final states are pruned, not {state!r}")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                getattr(self.q, f"prune_jobs_{state}"), {"age": age, "limit": limit}
            )
            return cur.rowcount

    async def prune_bookkeeping(self, age: float) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(self.q.prune_nodes, {"age": age})
            await conn.execute(self.q.prune_cron, {"age": age})

    async def dead_rows(self) -> tuple[int, int, bool]:
        """(dead rows, live rows, may vacuum) of the jobs table, from the statistics."""
        rows = await self._rows(self.q.jobs_dead_rows, {"table": self.q.table("pgqueue_jobs")})
        return rows[0] if rows else (0, 0, False)

    async def vacuum_jobs(self) -> None:
        await self._rows(self.q.vacuum_jobs)

    async def db_now(self) -> datetime:
        rows = await self._rows(self.q.db_now)
        return rows[0][0]

    async def last_cron_slots(self, names: Sequence[str]) -> dict[str, datetime]:
        rows = await self._rows(self.q.last_cron_slots, {"names": list(names)})
        return dict(rows)

    async def insert_cron_job(self, entry: Cron, slot: datetime) -> int | None:
        """Insert the job of ``entry``'s ``slot`` unless that slot already has one."""
        rows = await self._rows(
            self.q.insert_cron_job,
            {
                "table": self.q.table("pgqueue_jobs"),
                "name": entry.name,
                "slot": slot,
                "queue": entry.queue,
                "worker": entry.worker,
                "args": entry.args_json,
                "tags": list(entry.tags),
                "priority": entry.priority,
                "max_attempts": entry.max_attempts,
                "channel": self.channel,
            },
        )
        return rows[0][0] if rows else None
