"""``python -m tests.bench.server_cost``: the server's instructions per enqueue, counted.

Wall-clock figures on this machine swing by a third between runs (another tenant's load,
see steal.py), which hides any schema change worth less than that. Instructions do not
swing: this runs a private PostgreSQL in single-user mode under valgrind's callgrind and
counts what the server executes for one single-row enqueue (``insert_job_plain``, a
prepared statement and its commit, as W1 sends it) and for the ceiling's bare INSERT.
The same binaries and schema give the same count on any run, whatever else the machine
is doing, so a schema change (``--without`` an index) is measured in one sitting.

Each figure is (instructions of 3N statements - instructions of N) / 2N: start-up,
catalogue loading and the first executions cancel out. It is the server's work only:
the client, the network and the WAL flush's wait are not in it.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgqueue._migrate import migrate
from pgqueue.sql import queries

from . import ceiling

SCHEMA = "cost"
CHANNEL = f"{SCHEMA}.pgqueue_jobs"
INDEXES = "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'pgqueue_jobs'"


def _one_line(statement: str) -> str:
    """A statement on one line (single-user mode reads a statement per line), comments
    dropped, psycopg's ``%s`` placeholders as PREPARE's ``$1, $2, ...``."""
    lines = statement.splitlines()
    code = " ".join(line for line in lines if not line.lstrip().startswith("--"))
    count = iter(range(1, 100))
    return re.sub(r"%s", lambda _: f"${next(count)}", " ".join(code.split()))


STATEMENTS = {
    "ceiling INSERT": (
        f"PREPARE s(text, jsonb) AS {_one_line(ceiling.INSERT)}",
        "EXECUTE s('noop', '{\"i\":1}')",
    ),
    "pgqueue insert_job_plain": (
        "PREPARE s(text, text, text, text) AS " + _one_line(queries(SCHEMA).insert_job_plain),
        f"EXECUTE s('bench', 'noop', '{{\"i\":1}}', '{CHANNEL}')",
    ),
}


def _script(prepare: str, execute: str, n: int) -> str:
    # Single-user mode reads one statement per line.
    return "\n".join([prepare, *[execute] * n]) + "\n"


def _schema(dsn: str, without: list[str]) -> list[str]:
    """The bench ceiling's table and pgqueue's, then ``without``'s indexes dropped;
    returns pgqueue's index names as they are measured."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in ceiling.CREATE:
            conn.execute(statement.encode())
        migrate(conn, SCHEMA)
        known = {r[0] for r in conn.execute(INDEXES, (SCHEMA,))}
        if unknown := sorted(set(without) - known):
            raise SystemExit(
                f"no index {', '.join(unknown)} on pgqueue_jobs (it has: {', '.join(sorted(known))})"
            )
        for name in without:
            row = conn.execute(
                "SELECT c.conname FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid "
                "WHERE i.relname = %s AND c.contype = 'x'",
                (name,),
            ).fetchone()
            if row:  # an exclusion constraint's index goes with its constraint
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


def count(server: Any, prepare: str, execute: str, n: int, valgrind: str) -> float:
    """Instructions per ``execute`` in a single-user backend on ``server``'s data
    (stopped: a single-user backend needs the data directory to itself)."""
    user = server._user  # PostgreSQL refuses to run as root: the server's own user
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    totals = []
    for runs in (n, 3 * n):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            os.chmod(tmp, 0o777)
            argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                    str(server.bin / "postgres"), "--single", "-D", str(server.data),
                    "-c", "fsync=off", "postgres"]  # fmt: skip
            proc = subprocess.run(
                argv,
                input=_script(prepare, execute, runs),
                capture_output=True,
                text=True,
                timeout=1800,
                cwd=tmp,
                **as_user,  # type: ignore[arg-type]
            )
            errors = [line for line in proc.stderr.splitlines() if " ERROR: " in line]
            if proc.returncode != 0 or errors or not out.exists():
                raise SystemExit(f"single-user run failed: {(errors or [proc.stderr[-500:]])[0]}")
            summary = next(x for x in out.read_text().splitlines() if x.startswith("summary:"))
            totals.append(int(summary.split()[1]))
    return (totals[1] - totals[0]) / (2 * n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.server_cost", description=__doc__)
    p.add_argument("-n", type=int, default=500, help="statements of the short run (default 500)")
    p.add_argument(
        "--without", action="append", default=[], metavar="INDEX",
        help="measure pgqueue's statement with this index dropped (repeatable)",
    )  # fmt: skip
    args = p.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    from pgqueue.testing.embedded import EmbeddedPostgres

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    bin_dir = Path(bins[-1]) if bins and not os.environ.get("PGQUEUE_PG_BIN") else None
    with EmbeddedPostgres(bin_dir=bin_dir) as server:
        indexes = _schema(server.dsn, args.without)
        server.stop()
        print(f"pgqueue_jobs indexes measured ({len(indexes)}): {', '.join(indexes)}")
        base = None
        for name, (prepare, execute) in STATEMENTS.items():
            per = count(server, prepare, execute, args.n, valgrind)
            base = base or per
            print(f"{name:26} {per:10,.0f} instructions per statement ({per / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
