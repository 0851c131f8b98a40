"""Test helpers: wait on conditions with a deadline (never a bare sleep), run nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

import pgqueue


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


async def await_for(
    predicate: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
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
