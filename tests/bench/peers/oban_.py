"""oban 0.7 (the Python port of Elixir's Oban; needs Python >= 3.12: its own venv).

Worker classes are made by ``_workers()`` in every process that uses them: oban finds a
worker by its registered name, which is the same wherever the function runs.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from ._common import QUEUE, atimed, latency_run, record_start, run_until_signal

NAME = "oban"
VENV = ".venv-oban"
INSTALLED_TABLE = "oban_jobs"
TABLE = "oban_jobs"
UNFINISHED_SQL = (
    "SELECT count(*) FROM oban_jobs WHERE state IN ('available', 'executing', 'retryable')"
)
RESET_SQL = ["TRUNCATE oban_jobs RESTART IDENTITY", "TRUNCATE oban_producers, oban_leaders"]
KINDS = ("async",)


@cache
def _workers() -> dict[str, Any]:
    from oban import worker

    @worker(queue=QUEUE)
    class Noop:
        async def process(self, job: Any) -> None:
            return None

    @worker(queue=QUEUE)
    class Record:
        async def process(self, job: Any) -> None:
            record_start(job.args["i"])

    return {"async": Noop, "record": Record}


async def _client(dsn: str, **options: Any) -> tuple[Any, Any]:
    from oban import Oban

    pool = await Oban.create_pool(dsn)
    return pool, Oban(pool=pool, **options)


async def setup(dsn: str) -> None:
    from oban.schema import install

    pool, _ = await _client(dsn)
    try:
        await install(pool)
    finally:
        await pool.close()


async def insert_single(dsn: str, n: int) -> dict[str, float]:
    noop = _workers()["async"]
    pool, oban = await _client(dsn)

    async def run() -> None:
        for i in range(n):
            await oban.enqueue(noop.new({"i": i}))

    try:
        return {"seconds": await atimed(run())}
    finally:
        await pool.close()


async def insert_bulk(dsn: str, n: int) -> dict[str, float]:
    dicts = [{"i": i} for i in range(n)]
    noop = _workers()["async"]
    pool, oban = await _client(dsn)
    try:
        return {"seconds": await atimed(oban.enqueue_many([noop.new(d) for d in dicts]))}
    finally:
        await pool.close()


async def prefill(dsn: str, n: int, kind: str) -> None:
    cls = _workers()[kind]
    pool, oban = await _client(dsn)
    try:
        for start in range(0, n, 10_000):
            await oban.enqueue_many(
                [cls.new({"i": i}) for i in range(start, min(n, start + 10_000))]
            )
    finally:
        await pool.close()


def work(dsn: str, concurrency: int, kind: str) -> None:
    _workers()

    async def main(stop: asyncio.Event) -> None:
        pool, oban = await _client(dsn, queues={QUEUE: concurrency})
        try:
            await oban.start()
            await stop.wait()
            await oban.stop()
        finally:
            await pool.close()

    run_until_signal(main)


async def latency(dsn: str, n: int, interval: float, starts: str) -> dict[str, object]:
    record = _workers()["record"]
    pool, oban = await _client(dsn)
    try:
        return await latency_run(lambda i: oban.enqueue(record.new({"i": i})), n, interval, starts)
    finally:
        await pool.close()
