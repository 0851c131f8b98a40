"""Helpers for testing code that uses pgqueue.

- ``perform_job(Worker, args)`` runs one job inline, the way a worker would (args go
  through a JSON round trip), and returns what ``perform`` returned.
- ``assert_enqueued(client, worker=..., args=...)`` checks a matching job exists.
- ``drain_queue(client, "queue")`` runs a queue's available jobs in this process until
  none are left and returns how many ended in each state.
- ``pgqueue.testing.embedded`` starts a throwaway PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import _engine, _ops
from .._client import Client
from .._executor import Executor
from .._job import Job
from .._node import default_node_name
from .._threads import JobThreads
from .._worker import Worker


def perform_job(
    worker: type[Worker], args: Mapping[str, Any] | None = None, **fields: Any
) -> object:
    """Run ``worker``'s perform on a job built from ``args``; exceptions propagate.

    The job looks like one a worker claimed: ``executing``, attempt 1, with this
    process as ``attempted_by`` (``host.pid/perform_job``, shaped like a node's id)
    and now as its insert, schedule and attempt times, so
    code that reads them behaves as it will in production. ``fields`` override any of
    them.
    """
    now = datetime.now(UTC)
    fields.setdefault("state", "executing")
    fields.setdefault("attempt", 1)
    fields.setdefault("max_attempts", worker.max_attempts)
    for name in ("inserted_at", "scheduled_at", "attempted_at"):
        fields.setdefault(name, now)
    # A node's id is "name/suffix" (tests/apps parse it so); the suffix says who ran it.
    fields.setdefault("attempted_by", f"{default_node_name()}/perform_job")
    job = Job(
        id=fields.pop("id", 0),
        worker=worker.name,
        queue=fields.pop("queue", worker.queue),
        args=json.loads(json.dumps(dict(args or {}))),
        **fields,
    )
    result = worker().perform(job)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    return result


def list_jobs(
    client: Client,
    *,
    worker: type[Worker] | str | None = None,
    queue: str | None = None,
    state: str | None = None,
    tag: str | None = None,
    args: Mapping[str, Any] | None = None,
    limit: int = 1000,
) -> list[Job]:
    """Jobs matching every given filter (``args`` matches as a subset), newest first."""
    name = worker.name if isinstance(worker, type) else worker
    with client.pool().connection() as conn:
        return _ops.list_jobs(
            conn,
            client.schema,
            worker=name,
            queue=queue,
            state=state,
            tag=tag,
            args=args,
            limit=limit,
        )


def assert_enqueued(client: Client, **filters: Any) -> list[Job]:
    """Assert at least one job matches ``filters`` (see ``list_jobs``); returns them."""
    jobs = list_jobs(client, **filters)
    if not jobs:
        raise AssertionError(f"no job enqueued matching {filters!r}")
    return jobs


def refute_enqueued(client: Client, **filters: Any) -> None:
    jobs = list_jobs(client, **filters)
    if jobs:
        raise AssertionError(
            f"expected no job matching {filters!r}, found ids {[j.id for j in jobs]}"
        )


async def drain_queue_async(
    client: Client, queue: str = "default", *, with_scheduled: bool = False
) -> dict[str, int]:
    """Run ``queue``'s jobs inline until none is available; returns final states counted."""
    pool = await client.apool()
    engine = _engine.Engine(pool, client.schema)
    counts: Counter[str] = Counter()
    threads = JobThreads(4)
    try:
        executor = Executor("pgqueue.testing", threads)
        while True:
            if with_scheduled:
                async with pool.connection() as conn:
                    await conn.execute(client.queries.make_due, {"queue": queue})
            jobs = await engine.fetch_jobs(queue, 100, "pgqueue.testing")
            if not jobs:
                return dict(counts)
            for job in jobs:
                transition = await executor.run(job)
                await engine.ack_jobs([transition])
                counts["snoozed" if transition.state == "scheduled" else transition.state] += 1
    finally:
        threads.shutdown()


def drain_queue(
    client: Client, queue: str = "default", *, with_scheduled: bool = False
) -> dict[str, int]:
    """``drain_queue_async`` for sync tests."""

    async def run() -> dict[str, int]:
        try:
            return await drain_queue_async(client, queue, with_scheduled=with_scheduled)
        finally:
            await client.aclose()  # this loop's pool dies with the loop

    return asyncio.run(run())


__all__ = [
    "assert_enqueued",
    "drain_queue",
    "drain_queue_async",
    "list_jobs",
    "perform_job",
    "refute_enqueued",
]
