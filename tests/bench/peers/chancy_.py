"""Chancy 0.26 with its asyncio executor and eager polling (PEERS.md: without them a
backlog drains at ~2 jobs/s). Jobs name their function by import path, so the job
functions are plain module-level functions of this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._common import QUEUE, atimed, latency_run, record_start, run_until_signal

NAME = "chancy"
VENV = ".venv-peers"
INSTALLED_TABLE = "chancy_jobs"
TABLE = "chancy_jobs"
UNFINISHED_SQL = (
    "SELECT count(*) FROM chancy_jobs WHERE state IN ('pending', 'running', 'retrying')"
)
RESET_SQL = ["TRUNCATE chancy_jobs"]
KINDS = ("async",)
FUNCS = {"async": f"{__name__}.noop", "record": f"{__name__}.record"}
if __name__ == "__main__":  # pragma: no cover - always imported by dotted path
    raise SystemExit("run through python -m tests.bench.peers chancy ...")


async def noop(i: int) -> None:
    return None


async def record(i: int) -> None:
    record_start(i)


def _chancy(dsn: str) -> Any:
    import logging

    from chancy import Chancy

    logger = logging.getLogger("bench.chancy")
    logger.setLevel(logging.WARNING)
    return Chancy(dsn, log=logger)


def _job(kind: str, i: int) -> Any:
    from chancy import Job

    return Job(func=FUNCS[kind], queue=QUEUE, kwargs={"i": i})


async def _declare(chancy: Any, concurrency: int) -> None:
    from chancy import Queue

    await chancy.declare(
        Queue(
            QUEUE,
            concurrency=concurrency,
            executor="chancy.executors.asyncex.AsyncExecutor",
            eager_polling=True,
            polling_interval=1,
        ),
        upsert=True,
    )


async def _push_all(chancy: Any, jobs: list[Any]) -> None:
    """``push_many`` with its default batches (1,000 jobs a transaction), consumed."""
    async for _ in chancy.push_many(jobs):
        pass


async def setup(dsn: str) -> None:
    async with _chancy(dsn) as chancy:
        await chancy.migrate()
        await _declare(chancy, 10)


async def insert_single(dsn: str, n: int) -> dict[str, float]:
    async with _chancy(dsn) as chancy:

        async def run() -> None:
            for i in range(n):
                await chancy.push(_job("async", i))

        return {"seconds": await atimed(run())}


async def insert_bulk(dsn: str, n: int) -> dict[str, float]:
    dicts = [{"i": i} for i in range(n)]
    async with _chancy(dsn) as chancy:
        return {"seconds": await atimed(_push_all(chancy, [_job("async", d["i"]) for d in dicts]))}


async def prefill(dsn: str, n: int, kind: str) -> None:
    async with _chancy(dsn) as chancy:
        for start in range(0, n, 10_000):
            await _push_all(chancy, [_job(kind, i) for i in range(start, min(n, start + 10_000))])


def work(dsn: str, concurrency: int, kind: str) -> None:
    async def main(stop: asyncio.Event) -> None:
        from chancy import Worker

        async with _chancy(dsn) as chancy:
            await _declare(chancy, concurrency)
            worker = Worker(chancy, register_signal_handlers=False)
            await worker.start()
            await stop.wait()
            await worker.stop(timeout=10)

    run_until_signal(main)


async def latency(dsn: str, n: int, interval: float, starts: str) -> dict[str, object]:
    async with _chancy(dsn) as chancy:
        return await latency_run(lambda i: chancy.push(_job("record", i)), n, interval, starts)
