"""procrastinate 3.10 (psycopg 3). Concurrency raised from its default of 1 (PEERS.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from ._common import QUEUE, atimed, latency_run, record_start, run_until_signal

NAME = "procrastinate"
VENV = ".venv-peers"
INSTALLED_TABLE = "procrastinate_jobs"
TABLE = "procrastinate_jobs"
UNFINISHED_SQL = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
RESET_SQL = [
    "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, "
    "procrastinate_workers RESTART IDENTITY CASCADE"
]
KINDS = ("async", "sync")


def _app(dsn: str) -> tuple[Any, dict[str, Any]]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(queue=QUEUE, name="noop")
    async def noop(i: int) -> None:
        return None

    @app.task(queue=QUEUE, name="noop_sync")
    def noop_sync(i: int) -> None:
        return None

    @app.task(queue=QUEUE, name="record")
    async def record(i: int) -> None:
        record_start(i)

    return app, {"async": noop, "sync": noop_sync, "record": record}


async def setup(dsn: str) -> None:
    app, _ = _app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def insert_single(dsn: str, n: int) -> dict[str, float]:
    app, tasks = _app(dsn)
    async with app.open_async():

        async def run() -> None:
            for i in range(n):
                await tasks["async"].defer_async(i=i)

        return {"seconds": await atimed(run())}


async def insert_bulk(dsn: str, n: int) -> dict[str, float]:
    dicts = [{"i": i} for i in range(n)]
    app, tasks = _app(dsn)
    async with app.open_async():
        return {"seconds": await atimed(tasks["async"].batch_defer_async(*dicts))}


async def prefill(dsn: str, n: int, kind: str) -> None:
    app, tasks = _app(dsn)
    async with app.open_async():
        for start in range(0, n, 10_000):
            await tasks[kind].batch_defer_async(
                *({"i": i} for i in range(start, min(n, start + 10_000)))
            )


def work(dsn: str, concurrency: int, kind: str) -> None:
    app, _ = _app(dsn)

    async def main(stop: asyncio.Event) -> None:
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=concurrency,
                    wait=True,
                    install_signal_handlers=False,
                )
            )
            await asyncio.wait(
                {worker, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    run_until_signal(main)


async def latency(dsn: str, n: int, interval: float, starts: str) -> dict[str, object]:
    app, tasks = _app(dsn)
    async with app.open_async():
        return await latency_run(lambda i: tasks["record"].defer_async(i=i), n, interval, starts)
