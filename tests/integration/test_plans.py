"""The hot statements keep their plans whatever the statistics say.

A queue table is bulk-filled and drained faster than autovacuum analyzes it, so the
claim must read the fetch index in its own order both before any ANALYZE and after one.
Before migration 0003 a (state, queue) index won the claim on a fresh table of 60,000
jobs or more, and every claim sorted the whole backlog.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue._engine import _ack_params
from pgqueue.sql import queries

BACKLOG = 100_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _claim_plan(db: psycopg.Connection, schema: str) -> dict[str, Any]:
    params = _ack_params([])
    params.update(queue="bench", limit=10, node="plan-test")
    with db.transaction(force_rollback=True):
        (doc,) = db.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries(schema).fetch_jobs, params
        ).fetchone()
    plan = doc if isinstance(doc, list) else json.loads(doc)
    (picked,) = [n for n in _nodes(plan[0]["Plan"]) if n.get("Subplan Name") == "CTE picked"]
    return picked


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_claim_reads_the_fetch_index_in_order(db, schema, analyzed: bool) -> None:
    table = sql.Identifier(schema, "pgqueue_jobs")
    db.execute(
        sql.SQL(
            "INSERT INTO {} (queue, worker, args) "
            "SELECT 'bench', 'noop', jsonb_build_object('i', g) FROM generate_series(1, %s) g"
        ).format(table),
        [BACKLOG],
    )
    db.execute(sql.SQL("INSERT INTO {} (queue, worker) VALUES ('other', 'noop')").format(table))
    if analyzed:
        db.execute(sql.SQL("ANALYZE {}").format(table))
    picked = _claim_plan(db, schema)
    nodes = list(_nodes(picked))
    scans = [n for n in nodes if "Index Name" in n or "Scan" in n["Node Type"]]
    assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [
        ("Index Scan", "pgqueue_jobs_fetch_idx")
    ], scans
    assert not [n for n in nodes if n["Node Type"] == "Sort"]
    # The claim stops after its ten rows instead of reading the backlog.
    assert scans[0]["Actual Rows"] == 10
