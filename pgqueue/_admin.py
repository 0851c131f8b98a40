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


def _notify(conn: psycopg.Connection[Any], schema: str, rows: Sequence[tuple[Any, ...]]) -> None:
    queues = sorted({r[1] for r in rows})
    if queues:
        conn.execute(queries(schema).notify_queues, {"channel": channel(schema), "queues": queues})


# ---- queue controls, cancel, prune, nodes (shared by every node through the database) ----


def _control(conn: psycopg.Connection[Any], schema: str, payload: dict[str, Any]) -> None:
    from ._coordination import control_channel

    conn.execute(
        queries(schema).notify_control,
        {"channel": control_channel(schema), "payload": json.dumps(payload)},
    )


def pause_queue(conn: psycopg.Connection[Any], schema: str, queue: str) -> None:
    """Stop claiming ``queue`` on every node, now and after restarts, until resumed."""
    with conn.transaction():
        conn.execute(queries(schema).set_queue_paused, {"queue": queue, "paused": True})
        _control(conn, schema, {"action": "controls"})


def resume_queue(conn: psycopg.Connection[Any], schema: str, queue: str) -> None:
    with conn.transaction():
        conn.execute(queries(schema).set_queue_paused, {"queue": queue, "paused": False})
        _control(conn, schema, {"action": "controls"})
        conn.execute(queries(schema).notify_queues, {"channel": channel(schema), "queues": [queue]})


def scale_queue(conn: psycopg.Connection[Any], schema: str, queue: str, limit: int | None) -> None:
    """Set every node's concurrency for ``queue`` (None: back to each node's own)."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000
    ):
        from ._errors import ConfigError

        raise ConfigError(f"a queue's concurrency must be 1..10000, got {limit!r}")
    with conn.transaction():
        conn.execute(queries(schema).set_queue_concurrency, {"queue": queue, "concurrency": limit})
        _control(conn, schema, {"action": "controls"})


def queue_controls(conn: psycopg.Connection[Any], schema: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(queries(schema).queue_controls).fetchall()
    return {
        name: {"paused": paused, "limit": limit, "updated_at": at}
        for name, paused, limit, at in rows
    }


def known_queue(conn: psycopg.Connection[Any], schema: str, queue: str) -> bool:
    """Whether ``queue`` has jobs, a control row, or a live node serving it."""
    row = conn.execute(queries(schema).known_queue, {"queue": queue}).fetchone()
    return bool(row and row[0])


def cancel_jobs(
    conn: psycopg.Connection[Any],
    schema: str,
    ids: Sequence[int],
    reason: str = "cancelled by an operator",
) -> list[int]:
    """Cancel unfinished jobs; executing ones are also stopped on their node."""
    with conn.transaction():
        rows = conn.execute(
            queries(schema).cancel_jobs, {"ids": list(ids), "reason": reason}
        ).fetchall()
        executing = [job_id for job_id, previous, _ in rows if previous == "executing"]
        if executing:
            _control(conn, schema, {"action": "cancel", "ids": executing})
    return [r[0] for r in rows]


def prune_jobs(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    ages: Mapping[str, float] | None = None,
    batch: int = 10_000,
) -> dict[str, int]:
    """Delete finished jobs older than their state's age (seconds), in batches."""
    from ._leader import DEFAULT_PRUNE_AGES

    q = queries(schema)
    deleted: dict[str, int] = {}
    for state, age in {**DEFAULT_PRUNE_AGES, **(ages or {})}.items():
        total = 0
        while True:
            n = conn.execute(
                getattr(q, f"prune_jobs_{state}"), {"age": age, "limit": batch}
            ).rowcount
            total += n
            if n < batch:
                break
        deleted[state] = total
    return deleted


def list_nodes(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    cur = conn.execute(queries(schema).list_nodes)
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def leader(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """The node holding a valid leader lease, if any."""
    row = conn.execute(queries(schema).current_leader).fetchone()
    return row[0] if row and row[3] else None
