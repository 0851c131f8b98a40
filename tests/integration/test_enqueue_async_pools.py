"""The Client's async pools: one per event loop, closed when the loop ends."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import pgqueue
from tests.helpers import SLOWDOWN, await_for, wait_for

T = TypeVar("T")


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


def _wait_for_backends(db: psycopg.Connection, name: str, count: int, what: str) -> None:
    """Wait, with a deadline, for ``count`` backends of the Client tagged ``name``.

    A closed connection's backend leaves pg_stat_activity when its process has exited,
    after the close returned (one that opens is there before its connect returns), so
    a count taken after a close lags under load: it is waited for, never read once."""
    wait_for(lambda: _backends(db, name) == count, what=f"{count} backend(s): {what}")


async def _await_backends(db: psycopg.Connection, name: str, count: int, what: str) -> None:
    """``_wait_for_backends`` from a running event loop."""
    await await_for(
        lambda: asyncio.to_thread(lambda: _backends(db, name) == count),
        what=f"{count} backend(s): {what}",
    )


def test_asyncio_run_after_asyncio_run_leaves_no_connections(tagged, db) -> None:
    # Each asyncio.run made a pool of its own loop, kept by the Client (with its
    # connections) after the loop had ended: one more open backend per run.
    client, name = tagged
    jobs = [asyncio.run(Plain.enqueue_async({"n": i}, client=client)) for i in range(4)]
    assert [j.args["n"] for j in jobs] == [0, 1, 2, 3]
    wait_for(lambda: _backends(db, name) == 0, what="the ended loops' connections closed")
    # The last loop's ended pool is known until the Client next opens a pool or closes.
    assert [entry.ended for entry in client._apools.values()] == [True]
    client.close()
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
    _wait_for_backends(db, name, 1, "only the last loop's")
    client.close()
    wait_for(lambda: _backends(db, name) == 0, what="the closed loop's connections closed")


def test_first_calls_racing_on_one_loop_share_one_pool(tagged, db) -> None:
    # Two coroutines whose first async call overlapped each built a pool; the first
    # one's was overwritten in the Client and never closed.
    client, name = tagged

    async def main() -> tuple[object, object]:
        a, b = await asyncio.gather(client.apool(), client.apool())
        await Plain.enqueue_async({}, client=client)
        await _await_backends(db, name, 1, "the one pool's, the other closed")
        return a, b

    a, b = asyncio.run(main())
    assert a is b
    wait_for(lambda: _backends(db, name) == 0, what="the loop's pool closed")


def test_aclose_closes_the_loops_pool_and_a_new_one_follows(tagged, db) -> None:
    client, name = tagged

    async def main() -> None:
        await Plain.enqueue_async({}, client=client)
        await _await_backends(db, name, 1, "the loop's pool")
        await client.aclose()
        await _await_backends(db, name, 0, "the pool closed")
        await Plain.enqueue_async({}, client=client)  # a new pool for the same loop
        await _await_backends(db, name, 1, "the loop's new pool")

    asyncio.run(main())
    wait_for(lambda: _backends(db, name) == 0, what="the second pool closed with the loop")


def _run_within_deadline(main: Callable[[], Coroutine[Any, Any, T]]) -> bool:
    """Whether ``asyncio.run(main())`` ended within the deadline. Run in a thread of its
    own, so that a run that never ends (one whose pool had a connection closed under a
    statement did not) fails the test instead of hanging it: its loop is then stopped
    until the thread ends. What ``main`` finds is for it to keep."""
    result: dict[str, Any] = {}
    loops: list[asyncio.AbstractEventLoop] = []

    async def watched() -> T:
        loops.append(asyncio.get_running_loop())
        return await main()

    def run() -> None:
        try:
            asyncio.run(watched())
        except BaseException as exc:  # raised in the test's thread below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20 * SLOWDOWN)
    hung = thread.is_alive()
    while thread.is_alive():  # each stop ends one of asyncio.run's run_until_complete
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loops[0].call_soon_threadsafe(loops[0].stop)
        thread.join(0.1)
    if "error" in result and not hung:
        raise result["error"]
    return not hung


def _waiting_on_a_lock(db: psycopg.Connection, name: str) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND wait_event_type = 'Lock'",
        (name,),
    ).fetchone()[0]


def _stored(db: psycopg.Connection, n: int) -> int:
    return db.execute(
        "SELECT count(*) FROM pgqueue_jobs WHERE (args->>'n')::int = %s", (n,)
    ).fetchone()[0]


def test_an_insert_in_flight_as_the_loop_shuts_down_its_generators_completes(
    tagged, db, dsn: str, schema: str
) -> None:
    # The loop's shutdown of its async generators (asyncio.run's last step, here called
    # directly) closed the pool's connections, the one of an INSERT still on its way
    # too: its caller got an error ("connection socket closed"), and the INSERT, already
    # sent, committed all the same once its lock was free (the caller's retry would have
    # made a duplicate); asyncio.run then never ended.
    client, name = tagged
    outcome: list[object] = []

    async def main() -> None:
        await Plain.enqueue_async({"n": 0}, client=client)  # the loop's pool
        async with await psycopg.AsyncConnection.connect(dsn) as holder:
            jobs = sql.Identifier(schema, "pgqueue_jobs")
            await holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(jobs))
            task = asyncio.create_task(Plain.enqueue_async({"n": 1}, client=client))
            await await_for(
                lambda: asyncio.to_thread(_waiting_on_a_lock, db, name),
                what="the INSERT waiting for the table",
            )
            await asyncio.get_running_loop().shutdown_asyncgens()
            await holder.rollback()
        outcome.extend(await asyncio.gather(task, return_exceptions=True))

    ended = _run_within_deadline(main)
    assert _stored(db, 1) == 1
    assert [type(o) for o in outcome] == [pgqueue.Job], outcome
    assert ended, "asyncio.run did not end"
    wait_for(lambda: _backends(db, name) == 0, what="the loop's connections closed")


def test_once_the_loop_shut_down_its_generators_enqueues_go_on_without_its_pool(tagged, db) -> None:
    # The pool's workers are cancelled by then (asyncio.run cancels every task first)
    # and its idle connections closed: it is refused, and an enqueue takes a connection
    # of its own, closed after. Before, the next call opened a new pool, which the
    # ending loop never closed.
    client, name = tagged

    async def main() -> pgqueue.Job:
        await Plain.enqueue_async({"n": 0}, client=client)
        await asyncio.get_running_loop().shutdown_asyncgens()
        with pytest.raises(RuntimeError, match="shut down its async generators"):
            await client.apool()
        return await Plain.enqueue_async({"n": 1}, client=client)

    job = asyncio.run(main())
    assert _stored(db, 1) == 1 and job.id is not None
    wait_for(lambda: _backends(db, name) == 0, what="the loop's connections closed")


@pytest.mark.parametrize("when", ["at-once", "after-the-clean-up", "as-the-loops-first-call"])
def test_an_async_generator_closed_as_asyncio_run_ends_enqueues_once(tagged, db, when) -> None:
    # asyncio.run closes the async generators left unfinished all at once, the pool's
    # clean-up among them, in no set order. A generator whose finally enqueues before
    # the clean-up had its INSERT cut off (see above); one after it, or one making the
    # loop's first call, opened a new pool the ended loop never closed (and asyncio
    # warned that it was "scheduled after loop.shutdown_asyncgens()").
    client, name = tagged
    outcome: list[object] = []
    kept = []

    async def stream() -> AsyncIterator[None]:
        try:
            yield
        finally:
            if when == "after-the-clean-up":
                await asyncio.sleep(0)  # every generator's close began: the pool's is done
            try:
                outcome.append(await Plain.enqueue_async({"n": 1}, client=client))
            except BaseException as exc:
                outcome.append(exc)
                raise

    async def main() -> None:
        if when != "as-the-loops-first-call":
            await Plain.enqueue_async({"n": 0}, client=client)
        gen = stream()
        await gen.asend(None)
        kept.append(gen)  # left unfinished, for asyncio.run to close

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ended = _run_within_deadline(main)
    assert _stored(db, 1) == 1
    assert [type(o) for o in outcome] == [pgqueue.Job], outcome
    assert ended, "asyncio.run did not end"
    assert not [str(w.message) for w in caught if "shutdown_asyncgens" in str(w.message)]
    wait_for(lambda: _backends(db, name) == 0, what="the loop's connections closed")
