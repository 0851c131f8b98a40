"""pgqueue through its public API: ``Client``, ``Worker``, and the ``pgqueue worker`` CLI.

Workers are named explicitly (``bench.*``): the enqueueing process and the worker
process import this module under different names (``__main__`` vs its dotted path).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pgqueue

from ._common import QUEUE, atimed, latency_run, record_start, timed

NAME = "pgqueue"
VENV = None  # the bench's own interpreter
SCHEMA = "bench"
INSTALLED_TABLE = f"{SCHEMA}.pgqueue_jobs"
# The drain poll (every 0.2 s) counts each state through the partial index that holds
# it (available: the fetch index; executing: its own; retryable: the state and queue
# index). Written as one IN list, the planner had no index for it and ran a parallel
# scan of the whole table: on W4's 2,000,000 rows, 80 ms and three processes out of
# every 200 ms, taken from the worker it was timing (W4 read 0.63 of W2 for it, and
# 0.65 again when migration 0006 moved executing rows out of the index that held both).
UNFINISHED_SQL = "SELECT " + " + ".join(
    f"(SELECT count(*) FROM {SCHEMA}.pgqueue_jobs WHERE state = '{state}')"
    for state in ("available", "executing", "retryable")
)
RESET_SQL = [f"TRUNCATE {SCHEMA}.pgqueue_jobs RESTART IDENTITY"]
TABLE = f"{SCHEMA}.pgqueue_jobs"
KINDS = ("async", "sync")
SETUP_ALWAYS = True  # the schema is rebuilt from the code under test


class NoopAsync(pgqueue.Worker):
    name = "bench.noop_async"
    queue = QUEUE

    async def perform(self, job: pgqueue.Job) -> None:
        return None


class NoopSync(pgqueue.Worker):
    name = "bench.noop_sync"
    queue = QUEUE

    def perform(self, job: pgqueue.Job) -> None:
        return None


class Record(pgqueue.Worker):
    name = "bench.record"
    queue = QUEUE

    async def perform(self, job: pgqueue.Job) -> None:
        record_start(job.args["i"])


class Once(pgqueue.Worker):
    name = "bench.once"
    queue = QUEUE
    unique = pgqueue.Unique(period=3600)

    async def perform(self, job: pgqueue.Job) -> None:
        return None


WORKERS = {"async": NoopAsync, "sync": NoopSync, "record": Record}


def setup(dsn: str) -> None:
    # The bench schema is disposable: rebuilt from the migrations of the code under test.
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    subprocess.run(
        [sys.executable, "-m", "pgqueue", "migrate", "--dsn", dsn, "--schema", SCHEMA],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def worker_argv(python: str, dsn: str, concurrency: int, kind: str) -> list[str]:
    """The real CLI: start-up (imports, pool, migration check) is part of the clock."""
    return [
        python, "-m", "pgqueue", "worker",
        "--app", __name__ if __name__ != "__main__" else "tests.bench.peers.pgqueue_",
        "--queues", f"{QUEUE}:{concurrency}",
        "--dsn", dsn, "--schema", SCHEMA, "--log-level", "warning",
    ]  # fmt: skip


async def insert_single(dsn: str, n: int) -> dict[str, float]:
    """W1 single, async API: ``n`` awaited ``enqueue_async`` calls, pool opened first."""
    async with pgqueue.Client(dsn, schema=SCHEMA) as client:
        await client.apool()
        return {"seconds": await atimed(_enqueue_each(client, n))}


async def _enqueue_each(client: pgqueue.Client, n: int) -> None:
    for i in range(n):
        await NoopAsync.enqueue_async({"i": i}, client=client)


def insert_single_sync(dsn: str, n: int) -> dict[str, float]:
    """W1 single, sync API (what a WSGI view calls)."""
    with pgqueue.Client(dsn, schema=SCHEMA) as client:
        client.pool()

        def run() -> None:
            for i in range(n):
                NoopAsync.enqueue({"i": i}, client=client)

        return {"seconds": timed(run)}


def insert_bulk(dsn: str, n: int) -> dict[str, float]:
    """W1 bulk: the worker's ``enqueue_many``, timed from a list of dicts."""
    dicts = [{"i": i} for i in range(n)]
    with pgqueue.Client(dsn, schema=SCHEMA) as client:
        client.pool()
        return {"seconds": timed(lambda: NoopAsync.enqueue_many(dicts, client=client))}


def insert_bulk_specs(dsn: str, n: int) -> dict[str, float]:
    """W1 bulk through ``Client.enqueue_many`` of specs the caller builds one by one (the
    form for batches that mix workers or options), timed from the same list of dicts."""
    dicts = [{"i": i} for i in range(n)]
    with pgqueue.Client(dsn, schema=SCHEMA) as client:
        client.pool()
        return {"seconds": timed(lambda: client.enqueue_many([NoopAsync.new(d) for d in dicts]))}


def insert_unique(dsn: str, n: int, background: int, single: int) -> dict[str, float]:
    """W1 unique (pgqueue only): ``n`` new unique jobs in one ``enqueue_many`` beside
    ``background`` live unique jobs, the same ``n`` again (every one a duplicate), then
    ``single`` duplicates one ``enqueue`` call at a time. Each duplicate must come back
    as the job it duplicates."""
    with pgqueue.Client(dsn, schema=SCHEMA) as client:
        client.pool()
        for start in range(n, n + background, 5_000):
            stop = min(n + background, start + 5_000)
            Once.enqueue_many([{"k": k} for k in range(start, stop)], client=client)
        dicts = [{"k": k} for k in range(n)]
        jobs: list[pgqueue.Job] = []
        seconds = timed(lambda: jobs.extend(Once.enqueue_many(dicts, client=client)))
        again: list[pgqueue.Job] = []
        dup_seconds = timed(lambda: again.extend(Once.enqueue_many(dicts, client=client)))

        def each() -> None:
            again.extend(Once.enqueue(d, client=client) for d in dicts[:single])

        single_seconds = timed(each)
    ids = [j.id for j in jobs]
    if any(j.conflict for j in jobs) or not all(j.conflict for j in again):
        raise RuntimeError("a unique job was inserted twice, or a new one taken for a duplicate")
    if [j.id for j in again] != ids + ids[:single]:
        raise RuntimeError("a duplicate came back as another job")
    return {"seconds": seconds, "dup_seconds": dup_seconds, "single_seconds": single_seconds}


def prefill(dsn: str, n: int, kind: str) -> None:
    cls = WORKERS[kind]
    with pgqueue.Client(dsn, schema=SCHEMA) as client:
        for start in range(0, n, 100_000):
            client.enqueue_many([cls.new({"i": i}) for i in range(start, min(n, start + 100_000))])


def claim_loop(dsn: str, n: int, batch: int, lanes: int = 2) -> dict[str, float]:
    """W5's drain run with pgqueue's own engine: ``lanes`` producer connections, tuned
    as a worker's are, each claiming ``batch`` jobs through ``Engine.fetch_jobs`` and
    carrying its previous batch's completions, as fast as the claims return. No job is
    run: this is what pgqueue's SQL and row decoding allow here, and W2 in the same shape
    against it is what running the jobs costs. (Not a ceiling: one statement claims and
    completes, where the ceiling's drain spends two.)"""
    from psycopg_pool import AsyncConnectionPool

    from pgqueue._dsn import connection_options
    from pgqueue._engine import Engine
    from pgqueue._outcomes import Transition

    async def lane(engine: Engine, ready: asyncio.Barrier) -> int:
        try:
            async with await engine.connect() as conn:
                await engine.tune_claims(conn)
                await ready.wait()
                acks: list[Transition] = []
                done = 0
                while True:
                    jobs = await engine.fetch_jobs(QUEUE, batch, "bench-claim-loop", acks, conn)
                    if not jobs and not acks:
                        return done
                    done += len(jobs)
                    acks = [Transition(j.id, j.attempt, "completed") for j in jobs]
        except BaseException:
            await ready.abort()  # else a failure before the start leaves the others waiting
            raise

    async def main() -> dict[str, float]:
        pool = AsyncConnectionPool(dsn, open=False, kwargs=connection_options())
        engine = Engine(pool, SCHEMA)
        ready = asyncio.Barrier(lanes + 1)
        tasks = [asyncio.create_task(lane(engine, ready)) for _ in range(lanes)]
        try:
            await ready.wait()
        except asyncio.BrokenBarrierError:
            await asyncio.gather(*tasks)  # raises the lane's own error
            raise
        t = time.perf_counter()
        done = sum(await asyncio.gather(*tasks))
        seconds = time.perf_counter() - t
        if done != n:
            raise RuntimeError(f"the claim loop took {done} of {n} jobs")
        return {"seconds": seconds}

    # Prefilled as W2's jobs are, and like them never vacuumed nor analyzed, so that
    # W2 against this measures the jobs' own cost, not a difference in the table.
    prefill(dsn, n, "async")
    return asyncio.run(main())


def latency(dsn: str, n: int, interval: float, starts: str) -> dict[str, object]:
    async def main() -> dict[str, object]:
        async with pgqueue.Client(dsn, schema=SCHEMA) as client:
            await client.apool()
            return await latency_run(
                lambda i: Record.enqueue_async({"i": i}, client=client), n, interval, starts
            )

    return asyncio.run(main())


# W4: a million completed and a million future-scheduled rows, the way a busy table looks
# a day in (same queue and worker, so only the indexes keep them out of the claim's way).
BACKGROUND_SQL = [
    f"INSERT INTO {SCHEMA}.pgqueue_jobs "
    "(state, queue, worker, args, attempt, inserted_at, scheduled_at, attempted_at, completed_at) "
    "SELECT 'completed', 'bench', 'bench.noop_async', jsonb_build_object('i', g), 1, "
    "now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour', "
    "now() - interval '1 hour' FROM generate_series(1, {rows}) AS g",
    f"INSERT INTO {SCHEMA}.pgqueue_jobs (state, queue, worker, args, scheduled_at) "
    "SELECT 'scheduled', 'bench', 'bench.noop_async', jsonb_build_object('i', g), "
    "now() + interval '1 day' FROM generate_series(1, {rows}) AS g",
]
# The memory run's prefill: available no-op jobs, straight from SQL.
AVAILABLE_SQL = (
    f"INSERT INTO {SCHEMA}.pgqueue_jobs (state, queue, worker, args) "
    "SELECT 'available', 'bench', 'bench.noop_async', jsonb_build_object('i', g) "
    "FROM generate_series({start}, {stop}) AS g"
)
