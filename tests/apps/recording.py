"""Workers that record every execution in a side table, to count runs per job.

``runs(job_id, attempt, pid, started_at, finished_at)`` lives in ``$PGQUEUE_SCHEMA``; the
test creates it. Each execution inserts one row, so a job that ran twice has two.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import pgqueue

SCHEMA = os.environ.get("PGQUEUE_SCHEMA", "public")
INSERT = sql.SQL(
    "INSERT INTO {}.runs (job_id, attempt, pid, started_at, finished_at) VALUES (%s, %s, %s, %s, %s)"
).format(sql.Identifier(SCHEMA))

_apool: AsyncConnectionPool | None = None
_pool: ConnectionPool | None = None


async def _record_async(job: pgqueue.Job, started: datetime) -> None:
    global _apool
    if _apool is None:
        _apool = AsyncConnectionPool(
            os.environ["DATABASE_URL"],
            min_size=2,
            max_size=10,
            kwargs={"autocommit": True},
            open=False,
        )
        await _apool.open()
    async with _apool.connection() as conn:
        await conn.execute(INSERT, (job.id, job.attempt, os.getpid(), started, datetime.now(UTC)))


def _sleep_for(job: pgqueue.Job) -> float:
    """args["sleep"] seconds (default 0); with args["sleep_on"], only in the node of that
    name (tests/faults/node.py's --name; the node's id is "name/suffix"): a job that must
    still be running when that node stops, however slow the machine, yet runs at once on
    the next."""
    on = job.args.get("sleep_on")
    if on is not None and (job.attempted_by or "").rsplit("/", 1)[0] != on:
        return 0.0
    return float(job.args.get("sleep") or 0)


class Record(pgqueue.Worker):
    """Async: sleeps ``_sleep_for(job)`` seconds, then records the run."""

    def backoff(self, job: pgqueue.Job) -> float:
        return 0.5  # a run that failed on a database outage comes back quickly

    async def perform(self, job: pgqueue.Job) -> None:
        started = datetime.now(UTC)
        if seconds := _sleep_for(job):
            await asyncio.sleep(seconds)
        await _record_async(job, started)


class RecordSync(pgqueue.Worker):
    """Sync twin of Record, on the node's thread pool."""

    def backoff(self, job: pgqueue.Job) -> float:
        return 0.5

    def perform(self, job: pgqueue.Job) -> None:
        global _pool
        started = datetime.now(UTC)
        if seconds := _sleep_for(job):
            time.sleep(seconds)
        if _pool is None:
            _pool = ConnectionPool(
                os.environ["DATABASE_URL"], min_size=2, max_size=10, kwargs={"autocommit": True}
            )
        with _pool.connection() as conn:
            conn.execute(INSERT, (job.id, job.attempt, os.getpid(), started, datetime.now(UTC)))


class Noop(pgqueue.Worker):
    """Does nothing (cron tests count the jobs, not the runs)."""

    async def perform(self, job: pgqueue.Job) -> None:
        return None


class Sleeper(pgqueue.Worker):
    """Async: sleeps args["sleep"] seconds without recording (for shutdown tests)."""

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(job.args.get("sleep", 60))


class SyncSleeper(pgqueue.Worker):
    def perform(self, job: pgqueue.Job) -> None:
        deadline = time.monotonic() + job.args.get("sleep", 60)
        while time.monotonic() < deadline and not job.cancel_requested:
            time.sleep(0.05)


CREATE_RUNS = """
CREATE TABLE IF NOT EXISTS {schema}.runs (
    job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL,
    started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL
)"""
