"""PgQueuer 1.6 on asyncpg, as its own CLI runs it.

A per-worker cap needs ``max_concurrent_tasks >= 2 * batch_size``, so a cap of C runs
with batch_size C // 2 (5 for the cap of 10, as in PEERS.md). Completed jobs leave the
``pgqueuer`` table for ``pgqueuer_log``, so "unfinished" is simply what is left in it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ._common import atimed, latency_run, record_start, run_until_signal

NAME = "pgqueuer"
VENV = ".venv-peers"
INSTALLED_TABLE = "pgqueuer"
TABLE = "pgqueuer"
UNFINISHED_SQL = "SELECT count(*) FROM pgqueuer WHERE status IN ('queued', 'picked')"
RESET_SQL = ["TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics RESTART IDENTITY"]
KINDS = ("async", "sync")  # sync = a no-op through asyncio.to_thread, its documented way
EXTRA_W2 = [("async", 0, 1)]  # its own defaults: batch 10, no per-worker cap
ENTRYPOINTS = {"async": "noop", "sync": "noop_sync", "record": "record"}


async def _queries(dsn: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(dsn)
    return conn, Queries(AsyncpgDriver(conn))


def _payload(i: int) -> bytes:
    return json.dumps({"i": i}).encode()


async def setup(dsn: str) -> None:
    conn, q = await _queries(dsn)
    try:
        await q.install()
    finally:
        await conn.close()


async def insert_single(dsn: str, n: int) -> dict[str, float]:
    conn, q = await _queries(dsn)

    async def run() -> None:
        for i in range(n):
            await q.enqueue("noop", _payload(i), 0)

    try:
        return {"seconds": await atimed(run())}
    finally:
        await conn.close()


async def insert_bulk(dsn: str, n: int) -> dict[str, float]:
    dicts = [{"i": i} for i in range(n)]
    conn, q = await _queries(dsn)

    async def run() -> None:
        await q.enqueue(
            ["noop"] * len(dicts), [json.dumps(d).encode() for d in dicts], [0] * len(dicts)
        )

    try:
        return {"seconds": await atimed(run())}
    finally:
        await conn.close()


async def prefill(dsn: str, n: int, kind: str) -> None:
    conn, q = await _queries(dsn)
    ep = ENTRYPOINTS[kind]
    try:
        for start in range(0, n, 50_000):
            m = min(n, start + 50_000) - start
            await q.enqueue([ep] * m, [_payload(i) for i in range(start, start + m)], [0] * m)
    finally:
        await conn.close()


def work(dsn: str, concurrency: int, kind: str) -> None:
    async def main(stop: asyncio.Event) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, PgQueuer

        conn = await asyncpg.connect(dsn)
        pgq = PgQueuer(AsyncpgDriver(conn))

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        @pgq.entrypoint("noop_sync")
        async def noop_sync(job: Any) -> None:  # 1.6 refuses sync entrypoints
            await asyncio.to_thread(lambda: None)

        @pgq.entrypoint("record")
        async def record(job: Any) -> None:
            record_start(json.loads(job.payload)["i"])

        if concurrency > 0:
            run = pgq.run(batch_size=max(1, concurrency // 2), max_concurrent_tasks=concurrency)
        else:  # its own defaults: batch 10, no per-worker cap
            run = pgq.run()
        task = asyncio.create_task(run)
        await asyncio.wait(
            {task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        pgq.shutdown.set()
        try:
            await asyncio.wait_for(task, 10)
        except Exception:
            task.cancel()
        await conn.close()

    run_until_signal(main)


async def latency(dsn: str, n: int, interval: float, starts: str) -> dict[str, object]:
    conn, q = await _queries(dsn)
    try:
        return await latency_run(lambda i: q.enqueue("record", _payload(i), 0), n, interval, starts)
    finally:
        await conn.close()
