"""``python -m tests.bench.client_cost``: what a single enqueue costs the calling process.

server_cost.py counts the backend's side of W1 single; this measures the client's. It
runs the same enqueue through six layers, each adding one thing to the last, on one
server and in one sitting, and reports for each the calling process's CPU time per call
(``time.process_time``: every thread of the process, the pool's included, and the
kernel's work inside its system calls, such as the loopback delivery a ``send`` does;
not the wait for the server) and the wall time per call:

1. the ceiling's bare INSERT (tests/bench/ceiling.py) on one open connection;
2. pgqueue's statement for ``Worker.enqueue(args)`` (``insert_job_plain``, as the engine
   chooses it) on one open connection; psycopg receives the whole reply, but no row
   is made of it;
3. the same, fetching the RETURNING row as a Python tuple;
4. the same on a connection taken from the client's pool and given back per call;
5. the engine's insert (``_engine.insert_jobs``: the statement chosen and its parameters
   built for the spec, as every enqueue does, sent straight on libpq as the Client's own
   checkout does (``_connections.fetch_one``), the Job it builds) in place of the
   cursor's execute;
6. ``Worker.enqueue(args)``: the spec, the pool, the engine's insert.

Layers run ``-n`` calls each, in a new shuffled order every round, and the round of six
repeats ``--rounds`` times, so slow stretches of the machine and the order fall on every
layer alike; the medians are printed with the range of the wall times, and a layer's
"added" figure is only worth reading when it is larger than those ranges. Without
``--dsn`` (or ``DATABASE_URL``) it starts a private server; with one, it recreates the
schemas ``client_cost`` and ``bench_ceiling`` in that database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
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
    "+ fetch its RETURNING row",
    "+ a pool connection per call",
    "+ the engine's insert (libpq, Job)",
    "Worker.enqueue (+ the spec)",
)


def _prepare(dsn: str) -> None:
    ceiling.prepare(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        migrate(conn, SCHEMA)
        conn.execute("CHECKPOINT")  # as before every measurement of the bench (see cli.py)


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

    def per_call(body: Callable[[psycopg.Connection[Any]], object]) -> Callable[[int], None]:
        # getconn/putconn, as Client.enqueue_many does, around each call of ``body``.
        def run(n: int) -> None:
            for _ in range(n):
                conn = pool.getconn()
                try:
                    body(conn)
                finally:
                    pool.putconn(conn)

        return run

    pooled = per_call(lambda conn: conn.execute(statement, params).fetchone())
    engine = per_call(lambda conn: insert_jobs(conn, client.queries, [spec], kept=True))

    def api(n: int) -> None:
        for _ in range(n):
            NoopAsync.enqueue(ARGS, client=client)

    return [ceiling_insert, held(False), held(True), pooled, engine, api]


Samples = list[tuple[list[float], list[float]]]


def measure(
    dsn: str,
    n: int,
    rounds: int,
    seed: int = 0,
    only: Sequence[int] | None = None,
    reverse: bool = False,
) -> Samples:
    """Per layer of LAYERS, the CPU and the wall time per call (us) of each round
    (``only``: those layers' indexes; the others' samples stay empty). The order is
    shuffled every round, or with ``reverse`` turned round (A B, B A, A B, ...)."""
    _prepare(dsn)
    samples: Samples = [([], []) for _ in LAYERS]
    order = list(range(len(LAYERS)) if only is None else only)
    shuffle = list.reverse if reverse else random.Random(seed).shuffle
    with (
        pgqueue.Client(dsn, schema=SCHEMA, min_size=1, max_size=1) as client,
        psycopg.connect(dsn, autocommit=True) as bare,
    ):
        runs = layers(client, bare)
        for i in order:
            runs[i](20)  # connections open, statements prepared, code paths warm
        for _ in range(rounds):
            shuffle(order)
            for i in order:
                c0, w0 = time.process_time(), time.perf_counter()
                runs[i](n)
                samples[i][0].append((time.process_time() - c0) / n * 1e6)
                samples[i][1].append((time.perf_counter() - w0) / n * 1e6)
    return samples


def alternating(dsn: str, n: int, rounds: int) -> tuple[float, float, float]:
    """``Worker.enqueue(args)`` (the sync API, as ``layers`` calls it: one spec's args,
    a one-connection pool) and the ceiling's bare INSERT in ``rounds`` rounds of ``n``
    calls each, the two taking turns to go first: each one's calls/s (medians of its
    rounds) and the median over the rounds of the enqueue's rate as a fraction of the
    INSERT's in the same round.

    A machine whose speed drifts during a bench run (they do, by a third, within
    minutes) moves W1 single and the INSERT apart when each is measured minutes from
    the other; here a slow stretch falls on both alike.
    """
    samples = measure(dsn, n, rounds, only=(0, len(LAYERS) - 1), reverse=True)
    insert, enqueue = samples[0][1], samples[-1][1]
    fraction = statistics.median(i / e for i, e in zip(insert, enqueue, strict=True))
    return 1e6 / statistics.median(enqueue), 1e6 / statistics.median(insert), fraction


def table(samples: Samples) -> str:
    """The printed table: each layer's median CPU and wall time, the wall times' range, and
    what each median adds to the one above (pgqueue's layers start at the second row; the
    ceiling's INSERT is the reference, not a step)."""
    medians = [(statistics.median(c), statistics.median(w)) for c, w in samples]
    lines = [
        f"| {'layer':38} | CPU us/call | added | wall us/call | [min-max]     | added |",
        f"|{'-' * 40}|-------------|-------|--------------|---------------|-------|",
    ]
    for i, (name, (cpu, wall)) in enumerate(zip(LAYERS, medians, strict=True)):
        before = medians[i - 1] if i >= 2 else None
        added_cpu = f"{cpu - before[0]:+5.1f}" if before else ""
        added_wall = f"{wall - before[1]:+5.1f}" if before else ""
        spread = f"[{min(samples[i][1]):.0f}-{max(samples[i][1]):.0f}]"
        lines.append(
            f"| {name:38} | {cpu:11.1f} | {added_cpu:5} | {wall:12.1f} | {spread:13} "
            f"| {added_wall:5} |"
        )
    base = medians[0][1]
    lines.append("")
    lines.append(
        f"Worker.enqueue's wall time is {medians[-1][1] / base:.2f}x the ceiling's INSERT "
        f"({base / medians[-1][1]:.0%} of its rate); pgqueue's statement alone "
        f"{medians[1][1] / base:.2f}x."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.client_cost", description=__doc__)
    p.add_argument(
        "--dsn",
        default=os.environ.get("DATABASE_URL"),
        help="default $DATABASE_URL; recreates the schemas client_cost and bench_ceiling there",
    )
    p.add_argument("-n", type=int, default=300, help="calls per layer and round (default 300)")
    p.add_argument("--rounds", type=int, default=15, help="rounds of the six (default 15)")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.dsn:
            dsn = args.dsn
        else:
            from pgqueue.testing.embedded import EmbeddedPostgres

            dsn = stack.enter_context(EmbeddedPostgres(bin_dir=system_bin_dir())).dsn
        samples = measure(dsn, args.n, args.rounds)
    print(f"medians of {args.rounds} rounds of {args.n} calls per layer\n")
    print(table(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
