"""Test helpers: wait on conditions with a deadline (never a bare sleep), run nodes."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

import pgqueue

# 200,000 turns of a Python loop in a function: about 4 ms at CPython 3.11's ~20 ns a
# turn on the 2.6 GHz cores this suite's waits were sized on (an estimate: no such
# instance was at hand to time it); 10 ms leaves those a factor of 1 through their noise.
# The instance of 2026-11-29 took 43-65 ms and ran the whole suite 8x slower than they do.
_SPIN_TURNS = 200_000
_SPIN_REFERENCE_S = 0.01


def stop_on_sigterm() -> None:
    """Make SIGTERM (a CI time limit, ``kill``) end the run the way Ctrl-C does.

    pytest then tears the fixtures down, so the private servers they started (SeaweedFS,
    RabbitMQ, an embedded PostgreSQL) stop too. Each runs in a session of its own, which
    a signal to the test run's process group does not reach: on the default action
    pytest died at once and they ran on. A signal to the whole group can arrive twice at
    once (directly, and passed on by the embedded PostgreSQL's wrapper): repeats within
    REPEAT_GRACE seconds are ignored, a later SIGTERM kills the run as before.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone (a runner, a plugin) handles it already
    first: list[float] = []

    def interrupt(signum: int, _frame: object) -> None:
        if first:
            if time.monotonic() - first[0] >= REPEAT_GRACE:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
            return
        first.append(time.monotonic())
        raise KeyboardInterrupt(f"signal {signum}: stopping, tearing the fixtures down")

    signal.signal(signal.SIGTERM, interrupt)


# A second SIGTERM this soon after the first is the same signal delivered twice.
REPEAT_GRACE = 2.0


def _spin() -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(_SPIN_TURNS):
        total += i
    return time.perf_counter() - t0


def machine_slowdown() -> float:
    """How many times slower than the machines the suite's waits were sized on this one
    runs Python: 1 on those, about 4-6 on the slow instance of 2026-11-29.

    The time a test gives something to happen (a wait for a state, pytest-timeout's
    limit) is stretched by it, so a slow instance makes the suite slow, not red. A bound
    that is the behaviour under test is never stretched. ``PGQUEUE_TEST_SLOWDOWN`` sets
    the factor instead of measuring it."""
    given = os.environ.get("PGQUEUE_TEST_SLOWDOWN")
    if given:
        return max(1.0, float(given))
    return max(1.0, min(_spin() for _ in range(3)) / _SPIN_REFERENCE_S)


SLOWDOWN = machine_slowdown()


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``
    (stretched by ``SLOWDOWN``)."""
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


async def await_for(
    predicate: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    timeout *= SLOWDOWN  # as in wait_for
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def states(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    rows = conn.execute(
        sql.SQL("SELECT state::text, count(*) FROM {}.pgqueue_jobs GROUP BY state").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    return dict(rows)


def job_row(conn: psycopg.Connection, schema: str, job_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(
        sql.SQL("SELECT *, state::text AS state FROM {}.pgqueue_jobs WHERE id = %s").format(
            sql.Identifier(schema)
        ),
        [job_id],
    ).fetchone()
    assert row is not None, f"job {job_id} not found"
    return row


def run_node(
    dsn: str,
    schema: str,
    until: Callable[[], Any],
    *,
    queues: dict[str, int] | None = None,
    timeout: float = 20.0,
    **options: Any,
) -> pgqueue.Node:
    """Run a node in this process until ``until()`` (a sync DB check) holds, then stop it."""

    async def main() -> pgqueue.Node:
        node = pgqueue.Node(dsn, schema=schema, queues=queues or {"default": 5}, **options)
        await node.start()
        try:
            await await_for(lambda: asyncio.to_thread(until), timeout=timeout)
        finally:
            await node.stop()
        return node

    return asyncio.run(main())
