"""The Client's async pools: one per event loop, closed when the loop ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import pgqueue
from tests.helpers import wait_for


class Plain(pgqueue.Worker):
    queue = "apools"

    def perform(self, job: pgqueue.Job) -> None:
        return None


@pytest.fixture
def tagged(dsn: str, schema: str, db) -> Iterator[tuple[pgqueue.Client, str]]:
    """A Client whose connections carry an application_name of their own, to count."""
    name = f"pgq-apools-{uuid.uuid4().hex[:8]}"
    client = pgqueue.Client(make_conninfo(dsn, application_name=name), schema=schema)
    yield client, name
    client.close()


def _backends(db: psycopg.Connection, name: str) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchone()[0]


def test_asyncio_run_after_asyncio_run_leaves_no_connections(tagged, db) -> None:
    # Each asyncio.run made a pool of its own loop, kept by the Client (with its
    # connections) after the loop had ended: one more open backend per run.
    client, name = tagged
    jobs = [asyncio.run(Plain.enqueue_async({"n": i}, client=client)) for i in range(4)]
    assert [j.args["n"] for j in jobs] == [0, 1, 2, 3]
    wait_for(lambda: _backends(db, name) == 0, what="the ended loops' connections closed")
    assert client._apools == {}


def test_a_loop_closed_by_hand_is_cleaned_up_by_the_next_pool(tagged, db) -> None:
    # A loop closed without shutting down its async generators: its pool's connections
    # are closed when the Client next opens a pool (or closes).
    client, name = tagged
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(Plain.enqueue_async({}, client=client))
        for task in asyncio.all_tasks(loop):  # the pool's workers, as asyncio.run would
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert _backends(db, name) == 1  # only the last loop's
    client.close()
    wait_for(lambda: _backends(db, name) == 0, what="the closed loop's connections closed")


def test_first_calls_racing_on_one_loop_share_one_pool(tagged, db) -> None:
    # Two coroutines whose first async call overlapped each built a pool; the first
    # one's was overwritten in the Client and never closed.
    client, name = tagged

    async def main() -> tuple[object, object, int]:
        a, b = await asyncio.gather(client.apool(), client.apool())
        await Plain.enqueue_async({}, client=client)
        return a, b, _backends(db, name)

    a, b, during = asyncio.run(main())
    assert a is b and during == 1
    wait_for(lambda: _backends(db, name) == 0, what="the loop's pool closed")


def test_aclose_closes_the_loops_pool_and_a_new_one_follows(tagged, db) -> None:
    client, name = tagged

    async def main() -> list[int]:
        seen = []
        await Plain.enqueue_async({}, client=client)
        seen.append(_backends(db, name))
        await client.aclose()
        seen.append(_backends(db, name))
        await Plain.enqueue_async({}, client=client)  # a new pool for the same loop
        seen.append(_backends(db, name))
        return seen

    assert asyncio.run(main()) == [1, 0, 1]
    wait_for(lambda: _backends(db, name) == 0, what="the second pool closed with the loop")
