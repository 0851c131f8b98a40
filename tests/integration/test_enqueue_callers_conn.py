"""Enqueue on a caller's connection set up its own way: a row factory, a pipeline.

A connection handed in with ``conn=`` is the caller's; whatever it is configured for,
pgqueue's statements on it must read their own rows and run, and a failure must never
come after the INSERT (the caller would retry and insert the job twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row, namedtuple_row

import pgqueue
from pgqueue._engine import COPY_FROM
from tests.helpers import job_row


class Plain(pgqueue.Worker):
    queue = "callers"

    def perform(self, job: pgqueue.Job) -> None:
        return None


class Keyed(pgqueue.Worker):
    queue = "callers"
    unique = pgqueue.Unique(period=300, keys=["k"])

    def perform(self, job: pgqueue.Job) -> None:
        return None


def _specs(path: str) -> list[pgqueue.JobSpec]:
    """The specs that take ``path`` through insert_jobs."""
    if path == "plain":  # insert_job_plain
        return [Plain.new({"n": 0})]
    if path == "options":  # insert_job_now
        return [Plain.new({"n": 0}, priority=3, tags=["t"])]
    if path == "scheduled":  # insert_job
        return [Plain.new({"n": 0}, schedule_in=60)]
    if path == "batch":  # insert_jobs_plain
        return [Plain.new({"n": i}) for i in range(3)]
    if path == "copy":  # reserve_job_ids + COPY + notify_queues
        return [Plain.new({"n": i}) for i in range(COPY_FROM)]
    if path == "unique":  # insert_jobs, a key twice and a plain job between
        return [Keyed.new({"k": 1, "n": 0}), Plain.new({"n": 1}), Keyed.new({"k": 1, "n": 2})]
    raise AssertionError(path)


PATHS = ["plain", "options", "scheduled", "batch", "copy", "unique"]


def _enqueue(
    client: pgqueue.Client, dsn: str, api: str, specs: list[pgqueue.JobSpec], **connect: Any
) -> list[pgqueue.Job]:
    """``enqueue_many`` on a connection of the caller's, in its transaction, committed."""
    if api == "sync":
        with psycopg.connect(dsn, **connect) as conn:
            jobs = client.enqueue_many(specs, conn=conn)
            conn.commit()
            return jobs

    async def main() -> list[pgqueue.Job]:
        async with await psycopg.AsyncConnection.connect(dsn, **connect) as conn:
            jobs = await client.enqueue_many_async(specs, conn=conn)
            await conn.commit()
            return jobs

    return asyncio.run(main())


def _assert_stored(db: psycopg.Connection, schema: str, specs, jobs: list[pgqueue.Job]) -> None:
    """Each returned job is its row, field for field, and no row is extra."""
    assert len(jobs) == len(specs)
    ids = {j.id for j in jobs}
    assert db.execute("SELECT count(*) FROM pgqueue_jobs").fetchone()[0] == len(ids)
    for spec, job in zip(specs, jobs, strict=True):
        assert job.worker == spec.worker
        assert job.args == (jobs[0].args if job.conflict else spec.args)
        row = job_row(db, schema, job.id)
        got = (job.worker, job.queue, job.args, job.state, job.meta, job.tags, job.priority,
               job.max_attempts, job.inserted_at, job.scheduled_at)  # fmt: skip
        want = tuple(row[k] for k in ("worker", "queue", "args", "state", "meta", "tags",
                                      "priority", "max_attempts", "inserted_at", "scheduled_at"))  # fmt: skip
        if job.conflict:
            assert job.args == row["args"] and job.id == jobs[0].id
        else:
            assert got == want, job.id


@pytest.mark.parametrize("row_factory", [dict_row, namedtuple_row], ids=["dict", "namedtuple"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_callers_row_factory_does_not_break_enqueue(
    client: pgqueue.Client, db, dsn: str, schema: str, api: str, path: str, row_factory: Callable
) -> None:
    # psycopg.connect(..., row_factory=dict_row): pgqueue's cursors on the connection
    # read tuples all the same. Before, the INSERT ran and reading row[0] of a dict
    # raised KeyError, so a caller that retried got the job twice.
    specs = _specs(path)
    jobs = _enqueue(client, dsn, api, specs, row_factory=row_factory)
    _assert_stored(db, schema, specs, jobs)
    if path == "unique":
        assert [j.conflict for j in jobs] == [False, False, True]
        again = _enqueue(client, dsn, api, specs[:1], row_factory=row_factory)
        assert again[0].conflict and again[0].id == jobs[0].id
        assert again[0].args == {"k": 1, "n": 0} and again[0].state == "available"


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_callers_autocommit_dict_row_connection_inserts_once(
    client: pgqueue.Client, db, dsn: str, schema: str, api: str
) -> None:
    # Autocommit: the INSERT commits at once, so an error reading its row afterwards
    # would leave the job in the table behind the caller's back.
    specs = _specs("plain")
    jobs = _enqueue(client, dsn, api, specs, row_factory=dict_row, autocommit=True)
    _assert_stored(db, schema, specs, jobs)


@pytest.mark.parametrize("size", [COPY_FROM - 1, COPY_FROM, 3 * COPY_FROM])
@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_callers_pipeline_takes_the_statement_path(
    client: pgqueue.Client, db, dsn: str, schema: str, api: str, size: int
) -> None:
    # COPY is not allowed in pipeline mode: from COPY_FROM jobs a batch on a connection
    # in a pipeline failed where one job fewer went in. It takes the one statement.
    specs = [Plain.new({"n": i}) for i in range(size)]
    if api == "sync":
        with psycopg.connect(dsn) as conn:
            with conn.pipeline():
                jobs = client.enqueue_many(specs, conn=conn)
                more = Plain.enqueue_many([{"n": size}] * COPY_FROM, client=client, conn=conn)
            conn.commit()
    else:

        async def main() -> tuple[list[pgqueue.Job], list[pgqueue.Job]]:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                async with conn.pipeline():
                    jobs = await client.enqueue_many_async(specs, conn=conn)
                    more = await Plain.enqueue_many_async(
                        [{"n": size}] * COPY_FROM, client=client, conn=conn
                    )
                await conn.commit()
                return jobs, more

        jobs, more = asyncio.run(main())
    _assert_stored(db, schema, specs + [Plain.new({"n": size})] * COPY_FROM, jobs + more)
