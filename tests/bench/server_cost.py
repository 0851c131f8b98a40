"""``python -m tests.bench.server_cost``: the server's instructions per enqueue and per
claimed job, counted.

Wall-clock figures on this machine swing by a third between runs (another tenant's load,
see steal.py), which hides any schema change worth less than that. Instructions do not
swing: this runs a private PostgreSQL under valgrind's callgrind and counts what one
backend executes for a single-row enqueue (``insert_job_plain`` through psycopg as a
prepared statement, with its RETURNING row and its commit, as W1 sends it) and for the
ceiling's bare INSERT. The same binaries and schema give the same count to about 0.1 %
on any run, whatever else the machine is doing, so a schema change (``--without`` an
index) is measured in one sitting.

``--drain`` counts W2's statements instead, per job: a connection draining a backlog in
batches (50 by default, a lane of W2 1 x 100), the ceiling with its claim and its ack
(two statements a batch), pgqueue with ``fetch_jobs`` carrying the previous batch's
completions (one statement a batch, on a connection tuned as a producer's).

Each figure is (instructions of a connection's 3N statements - those of N) / 2N:
connection start-up, catalogue loading and the first executions cancel out (in a drain,
also its first claim without acks and its last batch left unacked). It is the backend's
work only: the client, the network and the WAL flush's wait are not in it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgqueue._engine import _CLAIM_SETTINGS, _int_array, _single
from pgqueue._job import JobSpec
from pgqueue._migrate import migrate
from pgqueue.sql import queries

from . import ceiling
from .profile import system_bin_dir

SCHEMA = "cost"
INDEXES = "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'pgqueue_jobs'"

# What W1 sends: the ceiling's INSERT, and what the engine sends for Worker.enqueue(args)
# with default options (its own choice of statement and parameters).
PLAIN = JobSpec.with_defaults("noop", {"i": 1}, "bench", 0, 20, None)
STATEMENTS: dict[str, tuple[str, Any]] = {
    "ceiling INSERT": (ceiling.INSERT, ("noop", '{"i":1}')),
    "pgqueue insert_job_plain": _single(queries(SCHEMA), PLAIN),
}


def _schema(dsn: str, without: list[str]) -> list[str]:
    """The bench ceiling's table and pgqueue's, then ``without``'s indexes dropped;
    returns pgqueue's index names as they are measured."""
    ceiling.prepare(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, SCHEMA)
        known = {r[0] for r in conn.execute(INDEXES, (SCHEMA,))}
        if unknown := sorted(set(without) - known):
            raise SystemExit(
                f"no index {', '.join(unknown)} on pgqueue_jobs (it has: {', '.join(sorted(known))})"
            )
        for name in sorted(set(without)):
            row = conn.execute(
                "SELECT c.conname FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid "
                "WHERE i.relname = %s AND c.contype IN ('p', 'u', 'x')",
                (name,),
            ).fetchone()
            if row:  # a constraint's index (primary key, exclusion) goes with the constraint
                conn.execute(
                    sql.SQL("ALTER TABLE {}.pgqueue_jobs DROP CONSTRAINT {}").format(
                        sql.Identifier(SCHEMA), sql.Identifier(row[0])
                    )
                )
            else:
                conn.execute(
                    sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))
                )
        return sorted(r[0] for r in conn.execute(INDEXES, (SCHEMA,)))


class CountedServer:
    """``server``'s data directory run by a postmaster under callgrind, one output file
    per process (backends are forked, and callgrind follows a fork; a backend forked
    later starts from the postmaster's count at that moment, which the difference of two
    backends leaves in only as the postmaster's work between the two forks)."""

    def __init__(self, server: Any, valgrind: str) -> None:
        self.server = server
        self.valgrind = valgrind
        self.out = Path(tempfile.mkdtemp(prefix="pgqueue-cost-"))
        self.options = server.process_options()  # as the server runs: its user, no PG*
        if "user" in self.options:
            os.chown(self.out, self.options["user"], self.options["group"])
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CountedServer:
        argv = [self.valgrind, "--tool=callgrind", f"--callgrind-out-file={self.out}/cg.%p",
                str(self.server.bin / "postgres"), "-D", str(self.server.data),
                "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.server.port}",
                "-c", "unix_socket_directories=", "-c", "autovacuum=off"]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.out,
                **self.options,
            )
            deadline = time.monotonic() + 120
            while True:
                try:
                    psycopg.connect(self.server.dsn, connect_timeout=5).close()
                    return self
                except psycopg.OperationalError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("PostgreSQL under valgrind did not start") from None
                    time.sleep(0.5)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    self.proc.wait(300)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.out, ignore_errors=True)

    def instructions(self, statement: str, params: Any, runs: int) -> int:
        """Instructions of one backend that ran ``statement`` ``runs`` times, prepared."""

        def work(conn: psycopg.Connection[Any]) -> None:
            for _ in range(runs):
                conn.execute(statement, params, prepare=True)

        return self.backend(work)

    def backend(self, work: Callable[[psycopg.Connection[Any]], None]) -> int:
        """Instructions of one backend, from its connection to its exit, that did ``work``."""
        with psycopg.connect(self.server.dsn, autocommit=True) as conn:
            pid = conn.info.backend_pid
            work(conn)
        # callgrind writes the file as the backend exits: read it once the process is gone.
        deadline = time.monotonic() + 120
        while Path(f"/proc/{pid}").exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"backend {pid} did not exit")
            time.sleep(0.2)
        out = self.out / f"cg.{pid}"
        totals = [x for x in out.read_text().splitlines() if x.startswith("totals:")]
        if not totals:
            raise SystemExit(f"no callgrind totals for backend {pid}")
        return int(totals[0].split()[1])


def count(db: CountedServer, statement: str, params: Any, n: int) -> float:
    """Instructions per execution of ``statement``, start-up cancelled out."""
    many = db.instructions(statement, params, 3 * n)
    return (many - db.instructions(statement, params, n)) / (2 * n)


# What a drain's connection sends per batch: the ceiling's claim then its ack, pgqueue's
# fetch_jobs with the previous batch's completions (queue and node as W2's).
def _ceiling_drain(batches: int, batch: int) -> Callable[[psycopg.Connection[Any]], None]:
    def work(conn: psycopg.Connection[Any]) -> None:
        for _ in range(batches):
            ids = [r[0] for r in conn.execute(ceiling.CLAIM, [batch], prepare=True)]  # type: ignore[arg-type]
            if len(ids) != batch:
                raise SystemExit(f"the ceiling's backlog ran out ({len(ids)} of {batch})")
            conn.execute(ceiling.ACK, [ids], prepare=True)  # type: ignore[arg-type]

    return work


def _pgqueue_drain(batches: int, batch: int) -> Callable[[psycopg.Connection[Any]], None]:
    statement = queries(SCHEMA).fetch_jobs

    def work(conn: psycopg.Connection[Any]) -> None:
        conn.execute(_CLAIM_SETTINGS)  # as Engine.tune_claims sets a producer's connection
        done: list[tuple[int, int]] = []
        for _ in range(batches):
            done.sort()
            params = {
                "ids": _int_array(i for i, _ in done), "attempts": _int_array(a for _, a in done),
                "queue": DRAIN_QUEUE, "limit": batch, "node": "cost/1",
            }  # fmt: skip
            with conn.cursor(binary=True) as cur:
                cur.execute(statement, params, prepare=True)  # type: ignore[arg-type]
                names = [c.name for c in cur.description or ()]
                i, a = names.index("id"), names.index("attempt")
                done = [(r[i], r[a]) for r in cur.fetchall()]
            if len(done) != batch:
                raise SystemExit(f"pgqueue's backlog ran out ({len(done)} of {batch})")

    return work


def drain_count(db: CountedServer, name: str, n: int, batch: int) -> float:
    """Instructions per job of ``name``'s drain, start-up and the edges cancelled out."""
    drain = _ceiling_drain if name == "ceiling" else _pgqueue_drain
    few = db.backend(drain(n, batch))
    many = db.backend(drain(3 * n, batch))
    return (many - few) / (2 * n * batch)


DRAIN_QUEUE = "bench"


def _backlog(dsn: str, rows: int) -> None:
    """``rows`` available jobs in each table, vacuumed and analysed as W2's prefill."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {ceiling.SCHEMA}.jobs (args) "  # type: ignore[arg-type]
            "SELECT jsonb_build_object('i', g) FROM generate_series(1, %s) AS g",
            [rows],
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.pgqueue_jobs (queue, worker, args) "
                "SELECT %s, 'noop', jsonb_build_object('i', g) FROM generate_series(1, %s) AS g"
            ).format(sql.Identifier(SCHEMA)),
            [DRAIN_QUEUE, rows],
        )
        conn.execute(f"VACUUM ANALYZE {ceiling.SCHEMA}.jobs")  # type: ignore[arg-type]
        conn.execute(sql.SQL("VACUUM ANALYZE {}.pgqueue_jobs").format(sql.Identifier(SCHEMA)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.server_cost", description=__doc__)
    p.add_argument("-n", type=int, default=300, help="statements of the short run (default 300)")
    p.add_argument(
        "--without", action="append", default=[], metavar="INDEX",
        help="measure pgqueue's statement with this index dropped (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--drain", action="store_true",
        help="count W2's claim and ack per job instead of W1's insert (N batches: -n / 10)",
    )  # fmt: skip
    p.add_argument("--batch", type=int, default=50, help="jobs per claim with --drain (default 50)")
    args = p.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    from pgqueue.testing.embedded import EmbeddedPostgres

    with EmbeddedPostgres(bin_dir=system_bin_dir()) as server:
        indexes = _schema(server.dsn, args.without)
        batches = max(1, args.n // 10)
        if args.drain:
            _backlog(server.dsn, 4 * batches * args.batch)
        server.stop()
        print(f"pgqueue_jobs indexes measured ({len(indexes)}): {', '.join(indexes)}")
        base = None
        with CountedServer(server, valgrind) as db:
            if args.drain:
                for name in ("ceiling", "pgqueue"):
                    per = drain_count(db, name, batches, args.batch)
                    base = base or per
                    what = "claim + ack" if name == "ceiling" else "fetch_jobs"
                    print(f"{name} {what:12} {per:10,.0f} instructions per job ({per / base:.2f}x)")
                return 0
            for name, (statement, params) in STATEMENTS.items():
                per = count(db, statement, params, args.n)
                base = base or per
                print(f"{name:26} {per:10,.0f} instructions per statement ({per / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
