"""Two worker processes drain 5,000 jobs: each completed exactly once, no overlapping runs."""

from __future__ import annotations

import signal
import subprocess
import sys

from psycopg import sql

from tests.apps import recording
from tests.helpers import states, wait_for

PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]
JOBS = 5000


def test_two_processes_drain_5000_jobs_exactly_once(client, db, dsn, schema, env, tmp_path) -> None:
    db.execute(sql.SQL(recording.CREATE_RUNS).format(schema=sql.Identifier(schema)))
    db.execute("TRUNCATE runs")
    # Half async, half sync jobs, inserted before any worker starts.
    specs = [
        (recording.Record if i % 2 else recording.RecordSync).new({"i": i}) for i in range(JOBS)
    ]
    client.enqueue_many(specs)
    # Logs go to files: a pipe nobody reads would block a worker logging 2,500 lines.
    logs = [open(tmp_path / f"worker-{n}.log", "w+") for n in range(2)]  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [
                *PGQUEUE,
                "worker",
                "--app",
                "tests.apps.recording",
                "--queues",
                "default:10",
                "--node",
                f"drain-{n}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=logs[n],
            text=True,
        )
        for n in range(2)
    ]
    try:
        wait_for(
            lambda: states(db, schema).get("completed", 0) == JOBS,
            timeout=180,
            interval=0.2,
            what="all jobs completed",
        )
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    assert [w.returncode for w in workers] == [0, 0], [(f.seek(0), f.read()[-3000:]) for f in logs]
    assert states(db, schema) == {"completed": JOBS}
    per_job = db.execute(
        "SELECT job_id, count(*) FROM runs GROUP BY job_id HAVING count(*) <> 1"
    ).fetchall()
    assert per_job == []
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == JOBS
    # Both processes took part, and every run was attempt 1 of its job.
    assert db.execute("SELECT count(DISTINCT pid) FROM runs").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM runs WHERE attempt <> 1").fetchone()[0] == 0
    overlapping = db.execute(
        "SELECT count(*) FROM runs a JOIN runs b ON a.job_id = b.job_id AND a.ctid < b.ctid "
        "AND tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)"
    ).fetchone()[0]
    assert overlapping == 0
    nodes = dict(
        db.execute(
            "SELECT split_part(attempted_by, '/', 1), count(*) FROM pgqueue_jobs GROUP BY 1"
        ).fetchall()
    )
    assert set(nodes) == {"drain-0", "drain-1"}
