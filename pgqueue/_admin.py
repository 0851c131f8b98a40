"""Operator and test operations on a sync connection: the engine's sync half.

What ``pgqueue inspect`` / ``retry`` and ``pgqueue.testing`` need: counting, listing,
showing and retrying jobs. Same named queries as everything else; every function takes
a connection and a schema, so the CLI decides how it connects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ._engine import channel, job_row
from ._job import Job
from ._states import STATES
from .sql import queries


def count_jobs(conn: psycopg.Connection[Any], schema: str) -> dict[str, dict[str, int]]:
    """queue → state → jobs, every state present (zeros included)."""
    out: dict[str, dict[str, int]] = {}
    for queue, state, n in conn.execute(queries(schema).count_jobs_by_queue_state).fetchall():
        out.setdefault(queue, dict.fromkeys(STATES, 0))[state] = n
    return out


def list_jobs(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    state: str | None = None,
    queue: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
    args: Mapping[str, Any] | None = None,
    limit: int = 50,
) -> list[Job]:
    params = {
        "state": state,
        "queue": queue,
        "worker": worker,
        "tag": tag,
        "args": None if args is None else json.dumps(dict(args)),
        "limit": limit,
    }
    with conn.cursor(row_factory=job_row) as cur:
        cur.execute(queries(schema).list_jobs, params)
        return cur.fetchall()


def get_job(conn: psycopg.Connection[Any], schema: str, job_id: int) -> Job | None:
    with conn.cursor(row_factory=job_row) as cur:
        cur.execute(queries(schema).get_job, {"id": job_id})
        return cur.fetchone()


def retry_jobs(conn: psycopg.Connection[Any], schema: str, ids: Sequence[int]) -> list[int]:
    """Make the given jobs available now (not executing ones); returns the ids changed."""
    q = queries(schema)
    with conn.transaction():
        rows = conn.execute(q.retry_jobs, {"ids": list(ids)}).fetchall()
        _notify(conn, schema, rows)
    return [r[0] for r in rows]


def retry_by_state(
    conn: psycopg.Connection[Any],
    schema: str,
    state: str,
    *,
    queue: str | None = None,
    worker: str | None = None,
) -> list[int]:
    q = queries(schema)
    with conn.transaction():
        rows = conn.execute(
            q.retry_jobs_by_state, {"state": state, "queue": queue, "worker": worker}
        ).fetchall()
        _notify(conn, schema, rows)
    return [r[0] for r in rows]


def _notify(conn: psycopg.Connection[Any], schema: str, rows: Sequence[tuple[Any, ...]]) -> None:
    queues = sorted({r[1] for r in rows})
    if queues:
        conn.execute(queries(schema).notify_queues, {"channel": channel(schema), "queues": queues})
