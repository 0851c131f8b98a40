"""Operator reads and bulk changes on a sync connection, beyond ``_admin``.

What ``pgqueue inspect / retry / cancel / prune`` and the Prometheus gauges need: a
per-queue overview that stays cheap on big tables, filtered job lists, bulk retry by
filter, and the questions behind a good error message ("why was job 7 left alone?").
Every function takes a connection and a schema; the SQL lives in ``sql/ops.sql``.

Counting a big table exactly costs time in proportion to its rows, and most rows of a
job table are completed jobs. ``queue_overview`` therefore counts exactly every state
holding fewer than ``exact_below`` rows by the planner's statistics (always the backlog:
available, scheduled, executing, retryable; usually the dead letter too) and estimates
only the big final states from a block sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from . import _admin
from ._engine import channel, job_row
from ._job import Job
from ._states import FINAL_STATES, STATES
from .sql import queries

LIVE_STATES: tuple[str, ...] = tuple(s for s in STATES if s not in FINAL_STATES)
FINAL: tuple[str, ...] = tuple(s for s in STATES if s in FINAL_STATES)
# Rows a sample should hold for the final-state estimate to be within a few percent.
SAMPLE_ROWS = 20_000


@dataclass(slots=True)
class Overview:
    """Jobs per queue and state, and how long each queue's oldest available job waited.

    ``estimated`` names the states whose counts are estimates (empty: all exact);
    ``table_rows`` is the planner's estimate of the table's size (-1: never analyzed).
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_available: dict[str, float] = field(default_factory=dict)
    estimated: tuple[str, ...] = ()
    table_rows: int = -1
    seconds: float = 0.0


def table_estimate(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(queries(schema).ops_table_estimate, {"schema": schema}).fetchone()
    return -1 if row is None or row[0] is None else int(row[0])


def state_fractions(conn: psycopg.Connection[Any], schema: str) -> dict[str, float]:
    """state → fraction of the table, from the last ANALYZE (empty if never analyzed)."""
    cur = conn.execute(queries(schema).ops_state_fractions, {"schema": schema})
    return {state: float(fraction) for state, fraction in cur}


def queue_overview(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    exact_below: int = 2_000_000,
    exact: bool = False,
) -> Overview:
    """Counts per queue and state (every state present), plus oldest-available ages.

    Live states are always counted. A final state is counted too unless the planner's
    statistics put it at ``exact_below`` rows or more; such states (typically
    ``completed`` on a table nobody prunes) are estimated from a block sample, scaled so
    that the states add up to the table's estimated size.
    """
    started = time.perf_counter()
    q = queries(schema)
    rows = table_estimate(conn, schema)
    sampled: tuple[str, ...] = ()
    if not exact and rows >= exact_below:
        fractions = state_fractions(conn, schema)
        sampled = tuple(s for s in FINAL if fractions.get(s, 0.0) * rows >= exact_below)
    out = Overview(table_rows=rows, estimated=sampled)
    counted = [s for s in STATES if s not in sampled]
    for queue, state, n in conn.execute(q.ops_count_jobs, {"states": counted}):
        out.counts.setdefault(queue, dict.fromkeys(STATES, 0))[state] = n
    if sampled:
        exact_total = sum(n for per in out.counts.values() for n in per.values())
        sample = _sample(conn, schema, rows, sampled)
        in_sample = sum(sample.values())
        remaining = max(rows - exact_total, 0)
        for (queue, state), n in sample.items():
            value = round(n * remaining / in_sample)
            if value:
                out.counts.setdefault(queue, dict.fromkeys(STATES, 0))[state] = value
    if out.counts:
        ages = conn.execute(q.ops_oldest_available, {"queues": sorted(out.counts)})
        out.oldest_available = {queue: max(age, 0.0) for queue, age in ages}
    out.seconds = time.perf_counter() - started
    return out


def _sample(
    conn: psycopg.Connection[Any], schema: str, rows: int, states: Sequence[str]
) -> dict[tuple[str, str], int]:
    percent = min(100.0, max(0.01, 100.0 * SAMPLE_ROWS / max(rows, 1)))
    cur = conn.execute(
        queries(schema).ops_sample_jobs, {"percent": percent, "states": list(states)}
    )
    return {(queue, state): n for queue, state, n in cur}


def list_jobs(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    state: str | None = None,
    queue: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
    node: str | None = None,
    args: Mapping[str, Any] | None = None,
    limit: int = 50,
) -> list[Job]:
    """Jobs matching every given filter (``args`` as a subset), newest first."""
    params = {
        "state": state,
        "queue": queue,
        "worker": worker,
        "tag": tag,
        "node": node,
        "args": None if args is None else json.dumps(dict(args)),
        "limit": limit,
    }
    with conn.cursor(row_factory=job_row) as cur:
        cur.execute(queries(schema).ops_list_jobs, params)
        return cur.fetchall()


def _filters(state: str, queue: str | None, worker: str | None, tag: str | None) -> dict[str, Any]:
    return {"state": state, "queue": queue, "worker": worker, "tag": tag}


def select_job_ids(
    conn: psycopg.Connection[Any],
    schema: str,
    state: str,
    *,
    queue: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
    after: int = 0,
    limit: int = 10_000,
) -> list[int]:
    """One batch of ids (ascending, above ``after``) of jobs in ``state`` matching."""
    params = {**_filters(state, queue, worker, tag), "after": after, "limit": limit}
    return [r[0] for r in conn.execute(queries(schema).ops_select_job_ids, params)]


def count_matching(
    conn: psycopg.Connection[Any],
    schema: str,
    state: str,
    *,
    queue: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
) -> int:
    row = conn.execute(
        queries(schema).ops_count_matching, _filters(state, queue, worker, tag)
    ).fetchone()
    return int(row[0]) if row else 0


def apply_matching(
    conn: psycopg.Connection[Any],
    schema: str,
    state: str,
    action: Callable[[psycopg.Connection[Any], str, list[int]], list[int]],
    *,
    queue: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
    batch: int = 10_000,
) -> list[int]:
    """Run ``action`` (an ``_admin`` operation on ids) over every job of ``state`` matching
    the filters, a batch of ids at a time, so a million matches never hold a million
    locks or a million ids at once; returns the ids it changed."""
    changed: list[int] = []
    after = 0
    while True:
        ids = select_job_ids(
            conn, schema, state, queue=queue, worker=worker, tag=tag, after=after, limit=batch
        )
        if not ids:
            return changed
        changed += action(conn, schema, ids)
        after = ids[-1]


def retry_matching(
    conn: psycopg.Connection[Any],
    schema: str,
    state: str,
    *,
    queue: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
) -> list[int]:
    """Make every job of ``state`` matching the filters available now; returns the ids.

    One transaction, in batches of ids, each retried like ``pgqueue retry ID...``.
    """
    with conn.transaction():
        return apply_matching(
            conn, schema, state, _admin.retry_jobs, queue=queue, worker=worker, tag=tag
        )


def job_states(conn: psycopg.Connection[Any], schema: str, ids: Iterable[int]) -> dict[int, str]:
    """id → state of each given id that exists."""
    cur = conn.execute(queries(schema).ops_job_states, {"ids": list(ids)})
    return {job_id: state for job_id, state in cur}


def count_prunable(
    conn: psycopg.Connection[Any], schema: str, ages: Mapping[str, float | None]
) -> dict[str, int]:
    """Final-state jobs older than ``ages[state]`` seconds (a state without an age: 0)."""
    params = {s: ages.get(s) for s in FINAL}
    row = conn.execute(queries(schema).ops_count_prunable, params).fetchone()
    assert row is not None
    return dict(zip(FINAL, (int(n) for n in row), strict=True))


def _notify(conn: psycopg.Connection[Any], schema: str, queues: Sequence[str] | set[str]) -> None:
    if queues:
        conn.execute(
            queries(schema).notify_queues, {"channel": channel(schema), "queues": sorted(queues)}
        )


def executing_by_node(conn: psycopg.Connection[Any], schema: str) -> dict[str | None, int]:
    """node name → jobs it holds in ``executing`` (None: claimed by no recorded node)."""
    cur = conn.execute(queries(schema).ops_executing_by_node)
    return {node: int(n) for node, n in cur}
