"""``make demo``: pgqueue end to end against a real PostgreSQL.

Migrates a ``pgqueue_demo`` schema, enqueues a mix of jobs, runs ``pgqueue worker`` with
a live progress line until the work is done, prints the per-state summary, shows the
dead letter and retries it. Uses ``$DATABASE_URL`` (``make demo`` starts an embedded
server when it is not set).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pgqueue  # noqa: E402
from examples import demo_app  # noqa: E402
from pgqueue import _admin  # noqa: E402

SCHEMA = "pgqueue_demo"
PGQUEUE = [sys.executable, "-m", "pgqueue"]
FINAL = ("completed", "discarded", "cancelled")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def pgq(*args: str) -> str:
    proc = subprocess.run(
        [*PGQUEUE, *args, "--schema", SCHEMA], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        sys.exit(f"pgqueue {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def counts(conn: psycopg.Connection) -> dict[str, int]:
    totals: dict[str, int] = {}
    for per_state in _admin.count_jobs(conn, SCHEMA).values():
        for state, n in per_state.items():
            totals[state] = totals.get(state, 0) + n
    return totals


def main() -> int:
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        sys.exit("DATABASE_URL is not set (run `make demo`, which provides a server)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))

    step(f"pgqueue migrate --schema {SCHEMA}")
    print(pgq("migrate"), end="")

    step("enqueue a mix of jobs")
    client = pgqueue.Client(dsn, schema=SCHEMA)
    jobs = client.enqueue_many(
        [demo_app.Thumbnail.new({"image": f"photo-{i}.jpg"}) for i in range(20)]
        + [demo_app.Charge.new({"order": i}) for i in range(5)]
        + [demo_app.Import.new({"file": f"batch-{i}.csv"}) for i in range(3)]
        + [demo_app.send_report.new({"to": "ops@example.com"}, schedule_in=3)]
    )
    print(
        f"  {len(jobs)} jobs in one statement: 20 thumbnails (succeed), 5 charges (fail twice, then succeed),"
    )
    print("  3 imports (always fail: end discarded), 1 report scheduled 3 s from now")
    first = demo_app.Digest.enqueue({"user_id": 7}, client=client)
    again = demo_app.Digest.enqueue({"user_id": 7, "reason": "clicked twice"}, client=client)
    print(
        f"  unique digest: job {first.id}; asked again -> job {again.id}, conflict={again.conflict}"
    )
    with psycopg.connect(dsn) as tx:
        demo_app.Thumbnail.enqueue({"image": "rolled-back.jpg"}, client=client, conn=tx)
        tx.rollback()
    print("  a job enqueued in a transaction that rolled back: not there")
    total = len(jobs) + 1

    step("pgqueue worker --app examples.demo_app --queues default:10,media:5")
    log_path = Path(tempfile.gettempdir()) / "pgqueue-demo-worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [
                *PGQUEUE,
                "worker",
                "--app",
                "examples.demo_app",
                "--queues",
                "default:10,media:5",
                "--schema",
                SCHEMA,
                "--poll-interval",
                "0.2",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    started = time.monotonic()
    tty = sys.stdout.isatty()
    last_print = 0.0
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                c = counts(conn)
                done = sum(c.get(s, 0) for s in FINAL)
                elapsed = time.monotonic() - started
                line = (
                    f"  [{elapsed:5.1f}s] done {done:>2}/{total}  completed {c.get('completed', 0):>2}  "
                    f"executing {c.get('executing', 0)}  retryable {c.get('retryable', 0)}  "
                    f"scheduled {c.get('scheduled', 0)}  discarded {c.get('discarded', 0)}"
                )
                if tty:
                    print("\r" + line, end="", flush=True)
                elif elapsed - last_print >= 1.0 or done == total:
                    print(line, flush=True)
                    last_print = elapsed
                if done == total:
                    break
                if worker.poll() is not None:
                    sys.exit(f"\nthe worker exited early ({worker.returncode}); see {log_path}")
                if elapsed > 120:
                    sys.exit(f"\nthe jobs did not finish in 120 s; see {log_path}")
                time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    if tty:
        print()
    print(f"  worker stopped (exit {worker.returncode}); its log: {log_path}")

    step("pgqueue inspect")
    print(pgq("inspect"), end="")
    step("pgqueue inspect --state discarded   (the dead letter)")
    print(pgq("inspect", "--state", "discarded"), end="")
    step("pgqueue retry --state discarded")
    print(pgq("retry", "--state", "discarded"), end="")
    print(pgq("inspect"), end="")
    client.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        c = counts(conn)
    ok = c.get("completed") == total - 3 and c.get("available") == 3 and worker.returncode == 0
    print("\ndemo finished: " + ("OK" if ok else f"unexpected counts {c}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
