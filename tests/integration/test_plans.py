"""The hot statements keep their plans whatever the statistics say.

A queue table is bulk-filled and drained faster than autovacuum analyzes it, so the
claim must read the fetch index in its own order both before any ANALYZE and after one.
Before migration 0003 a (state, queue) index won the claim on a fresh table of 60,000
jobs or more, and every claim sorted the whole backlog.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgqueue
from pgqueue._engine import _CLAIM_SETTINGS, insert_params
from pgqueue.sql import queries

BACKLOG = 100_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


# A claim of 10 jobs of the backlog's queue that carries no completions.
CLAIM_PARAMS = {"ids": "{}", "attempts": "{}", "queue": "bench", "limit": 10, "node": "plan-test"}


def _fill_backlog(db: psycopg.Connection, table: sql.Identifier) -> None:
    db.execute(
        sql.SQL(
            "INSERT INTO {} (queue, worker, args) "
            "SELECT 'bench', 'noop', jsonb_build_object('i', g) FROM generate_series(1, %s) g"
        ).format(table),
        [BACKLOG],
    )


def _claim_plan(db: psycopg.Connection, schema: str) -> dict[str, Any]:
    with db.transaction(force_rollback=True):
        (doc,) = db.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries(schema).fetch_jobs, CLAIM_PARAMS
        ).fetchone()
    plan = doc if isinstance(doc, list) else json.loads(doc)
    (picked,) = [n for n in _nodes(plan[0]["Plan"]) if n.get("Subplan Name") == "CTE picked"]
    return picked


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_claim_reads_the_fetch_index_in_order(db, schema, analyzed: bool) -> None:
    table = sql.Identifier(schema, "pgqueue_jobs")
    _fill_backlog(db, table)
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


def _prepared(query: str) -> tuple[str, list[str]]:
    """``query`` with its named placeholders as $1, $2, ... and the names in that order
    (what psycopg sends), for a PREPARE of our own."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, query), names


def test_a_claim_planned_once_on_an_empty_table_still_uses_the_indexes(db, schema) -> None:
    """A producer's connection keeps one generic plan of the claim (Engine.tune_claims).
    Made while the table is empty and analyzed, it must still read a 100,000-job backlog
    through the fetch index and find the completed jobs by primary key, with no scan of
    the table, no sort and no hash or merge join."""
    table = sql.Identifier(schema, "pgqueue_jobs")
    db.execute(sql.SQL("ANALYZE {}").format(table))
    db.execute(_CLAIM_SETTINGS)
    text, names = _prepared(queries(schema).fetch_jobs)
    db.execute("PREPARE claim AS " + text)  # type: ignore[arg-type]

    def execute(explain: str, **params: object) -> list[Any]:
        values = {**CLAIM_PARAMS, **params}
        args = sql.SQL(", ").join(sql.Literal(values[n]) for n in names)
        return db.execute(sql.SQL(explain + "EXECUTE claim ({})").format(args)).fetchall()  # type: ignore[arg-type]

    assert execute("") == []  # the generic plan is made now, on the empty table
    _fill_backlog(db, table)
    db.execute(
        sql.SQL("UPDATE {} SET state = 'executing', attempt = 1 WHERE id <= 5").format(table)
    )
    ((doc,),) = execute(
        "EXPLAIN (ANALYZE, FORMAT JSON) ", ids="{1,2,3,4,5}", attempts="{1,1,1,9,1}"
    )
    plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
    nodes = list(_nodes(plan))
    scans = sorted(
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if "Scan" in n["Node Type"] and n["Node Type"] != "CTE Scan"
    )
    assert scans == [
        ("Index Scan", "pgqueue_jobs_fetch_idx"),
        ("Index Scan", "pgqueue_jobs_pkey"),
        ("Index Scan", "pgqueue_jobs_pkey"),
    ], scans
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Hash Join", "Merge Join")]
    (picked,) = [n for n in nodes if n.get("Subplan Name") == "CTE picked"]
    (acked,) = [n for n in nodes if n.get("Subplan Name") == "CTE acked"]
    assert picked["Actual Rows"] == 10
    assert acked["Actual Rows"] == 4  # job 4 named attempt 9: not its attempt, not changed
    ((generic, custom),) = db.execute(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'claim'"
    ).fetchall()
    assert (generic, custom) == (2, 0)
    db.execute("DEALLOCATE claim")


class _Once(pgqueue.Worker):
    name = "plans.once"
    queue = "plans"
    unique = pgqueue.Unique(period=3600)

    def perform(self, job: pgqueue.Job) -> None:
        return None


LIVE_UNIQUE = 20_000


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_a_unique_batch_probes_the_constraint_once_per_duplicate(
    db, schema, dsn: str, analyzed: bool
) -> None:
    # Before migration 0007 a batch of unique jobs beside 25,000 others took 41.8 s: the
    # lookup of existing rows, planned without statistics, read every live window once
    # per job of the batch, and the numeric GiST index had lost its shape (44 pages read
    # to find one row). Now only the jobs that inserted nothing look, each with one probe
    # of the constraint's index that reads a few pages, whatever the statistics say.
    table = sql.Identifier(schema, "pgqueue_jobs")
    with pgqueue.Client(dsn, schema=schema) as client:
        for start in range(0, LIVE_UNIQUE, 5_000):
            client.enqueue_many([_Once.new({"k": k}) for k in range(start, start + 5_000)])
    if analyzed:
        db.execute(sql.SQL("ANALYZE {}").format(table))
    duplicates = [_Once.new({"k": k}) for k in range(0, LIVE_UNIQUE, 200)]  # 100
    fresh = [_Once.new({"k": -k}) for k in range(1, 101)]
    params, _ = insert_params(queries(schema), duplicates + fresh)
    with db.transaction(force_rollback=True):
        ((doc,),) = db.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + queries(schema).insert_jobs, params
        ).fetchall()
    nodes = list(_nodes((doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]))
    (insert,) = [n for n in nodes if n["Node Type"] == "ModifyTable"]
    assert insert["Conflicting Tuples"] == 100
    scans = [
        n
        for n in nodes
        if n.get("Relation Name") == "pgqueue_jobs" and n["Node Type"] != "ModifyTable"
    ]
    assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [
        ("Index Scan", "pgqueue_jobs_unique")
    ], scans
    (probe,) = scans
    assert probe["Actual Loops"] == 100 and probe["Actual Rows"] == 1
    assert probe["Shared Hit Blocks"] + probe["Shared Read Blocks"] <= 100 * 12, probe
