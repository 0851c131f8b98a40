"""``python -m tests.bench.client_cost``: what a single enqueue costs the calling process.

server_cost.py counts the backend's side of W1 single; this measures the client's. It
runs the same enqueue through six layers, each adding one thing to the last, on one
server and in one sitting, and reports for each the calling process's CPU time per call
(``time.process_time``: the client's own work, system calls included, without the wait
for the server) and the wall time per call:

1. the ceiling's bare INSERT (tests/bench/ceiling.py) on one open connection;
2. pgqueue's statement for ``Worker.enqueue(args)`` (``insert_job_plain``, as the engine
   chooses it) on one open connection, its reply not read;
3. the same, reading the RETURNING row;
4. the same on a connection taken from the client's pool and given back per call;
5. the engine's insert (``_engine.insert_jobs``: its cursor, the Job it builds) in place
   of the bare statement;
6. ``Worker.enqueue(args)``: the spec, the pool, the engine's insert.

Layers run in turn, ``-n`` calls each, and the round of six repeats ``--rounds`` times,
so slow stretches of the machine fall on every layer alike; the medians are printed.
Without ``--dsn`` (or ``DATABASE_URL``) it starts a private server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

import pgqueue
from pgqueue._engine import _single, insert_jobs
from pgqueue._migrate import migrate

from . import ceiling
from .peers.pgqueue_ import NoopAsync
from .profile import system_bin_dir

SCHEMA = "client_cost"
ARGS = {"i": 1}

LAYERS = (
    "ceiling INSERT, one connection",
    "pgqueue's statement, one connection",
    "+ read its RETURNING row",
    "+ a pool connection per call",
    "+ the engine's insert (cursor, Job)",
    "Worker.enqueue (+ the spec)",
)


def _prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in ceiling.CREATE:
            conn.execute(statement.encode())
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        migrate(conn, SCHEMA)


def layers(client: pgqueue.Client, bare: psycopg.Connection[Any]) -> list[Callable[[int], None]]:
    """One function per layer of LAYERS, each making ``n`` calls."""
    pool = client.pool()
    spec = NoopAsync.new(ARGS)
    statement, params = _single(client.queries, spec)
    insert = (ceiling.INSERT, ("noop", '{"i":1}'))

    def ceiling_insert(n: int) -> None:
        for _ in range(n):
            bare.execute(*insert)  # type: ignore[arg-type]

    def held(read: bool) -> Callable[[int], None]:
        def run(n: int) -> None:
            conn = pool.getconn()
            try:
                for _ in range(n):
                    cur = conn.execute(statement, params)
                    if read:
                        cur.fetchone()
            finally:
                pool.putconn(conn)

        return run

    def pooled(n: int) -> None:
        for _ in range(n):
            conn = pool.getconn()
            try:
                conn.execute(statement, params).fetchone()
            finally:
                pool.putconn(conn)

    def engine(n: int) -> None:
        for _ in range(n):
            conn = pool.getconn()
            try:
                insert_jobs(conn, client.queries, [spec])
            finally:
                pool.putconn(conn)

    def api(n: int) -> None:
        for _ in range(n):
            NoopAsync.enqueue(ARGS, client=client)

    return [ceiling_insert, held(False), held(True), pooled, engine, api]


def measure(dsn: str, n: int, rounds: int) -> list[tuple[float, float]]:
    """(median CPU us, median wall us) per call, for each layer of LAYERS."""
    _prepare(dsn)
    cpu: list[list[float]] = [[] for _ in LAYERS]
    wall: list[list[float]] = [[] for _ in LAYERS]
    with (
        pgqueue.Client(dsn, schema=SCHEMA, min_size=1, max_size=1) as client,
        psycopg.connect(dsn, autocommit=True) as bare,
    ):
        runs = layers(client, bare)
        for run in runs:
            run(20)  # connections open, statements prepared, code paths warm
        for _ in range(rounds):
            for i, run in enumerate(runs):
                c0, w0 = time.process_time(), time.perf_counter()
                run(n)
                cpu[i].append((time.process_time() - c0) / n * 1e6)
                wall[i].append((time.perf_counter() - w0) / n * 1e6)
    return [(statistics.median(c), statistics.median(w)) for c, w in zip(cpu, wall, strict=True)]


def table(figures: list[tuple[float, float]]) -> str:
    """The printed table: each layer's CPU and wall time, and what it adds to the one above."""
    lines = [
        f"| {'layer':38} | CPU us/call | added | wall us/call | added |",
        f"|{'-' * 40}|-------------|-------|--------------|-------|",
    ]
    for i, (name, (cpu, wall)) in enumerate(zip(LAYERS, figures, strict=True)):
        # The ceiling's INSERT is the reference, not a step: pgqueue's layers start at 2.
        before = figures[i - 1] if i >= 2 else None
        added_cpu = f"{cpu - before[0]:+5.1f}" if before else ""
        added_wall = f"{wall - before[1]:+5.1f}" if before else ""
        lines.append(f"| {name:38} | {cpu:11.1f} | {added_cpu:5} | {wall:12.1f} | {added_wall:5} |")
    base = figures[0][1]
    lines.append("")
    lines.append(
        f"Worker.enqueue's wall time is {figures[-1][1] / base:.2f}x the ceiling's INSERT "
        f"({base / figures[-1][1]:.0%} of its rate); pgqueue's statement alone "
        f"{figures[1][1] / base:.2f}x."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.client_cost", description=__doc__)
    p.add_argument("--dsn", default=os.environ.get("DATABASE_URL"), help="default $DATABASE_URL")
    p.add_argument("-n", type=int, default=300, help="calls per layer and round (default 300)")
    p.add_argument("--rounds", type=int, default=15, help="rounds of the six (default 15)")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.dsn:
            dsn = args.dsn
        else:
            from pgqueue.testing.embedded import EmbeddedPostgres

            dsn = stack.enter_context(EmbeddedPostgres(bin_dir=system_bin_dir())).dsn
        figures = measure(dsn, args.n, args.rounds)
    print(f"medians of {args.rounds} rounds of {args.n} calls per layer\n")
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
