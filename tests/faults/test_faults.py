"""Fault injection: kill workers, restart PostgreSQL, cut connections, lose the leader.

Every test asserts with database queries that nothing was lost and nothing that
finished ran again: executions are counted in a side table (``runs``) written by the
job itself. Timings printed here (run with ``-s``) are the figures the closing notes
quote: rescue latency after kill -9, time to resume after a PostgreSQL restart, time to
a new leader.
"""

from __future__ import annotations

import itertools
import time

import psycopg
import pytest
from psycopg import sql

from pgqueue import _admin
from pgqueue.testing.embedded import EmbeddedPostgres
from tests.apps import recording
from tests.faults.conftest import Workers, pg_env_for, prepare
from tests.helpers import states, wait_for

FAST = [
    "--heartbeat-interval",
    "0.5",
    "--heartbeat-expiry",
    "4",
    "--lease-ttl",
    "2",
    "--rescue-interval",
    "0.5",
    "--poll-interval",
    "0.5",
]


def runs_per_job(db: psycopg.Connection) -> dict[int, int]:
    return dict(db.execute("SELECT job_id, count(*) FROM runs GROUP BY job_id").fetchall())


def node_of(db: psycopg.Connection, job_id: int) -> str | None:
    row = db.execute("SELECT attempted_by FROM pgqueue_jobs WHERE id = %s", [job_id]).fetchone()
    return row[0] if row else None


def test_kill9_mid_job_is_rescued_after_the_heartbeat_expiry(
    client, runs_table, schema, workers: Workers
) -> None:
    db = runs_table
    # a has one slot, filled by the long job: every other job runs on b, so none of them
    # is in flight on a when it dies (those would legitimately run again).
    workers.start("a", *FAST, "--queues", "default:1")
    wait_for(lambda: len(_admin.list_nodes(db, schema)) == 1, what="node a up")
    long_job = recording.Record.enqueue({"sleep": 15}, client=client)
    wait_for(lambda: states(db, schema).get("executing") == 1, what="long job running on a")
    workers.start("b", *FAST)
    wait_for(lambda: len(_admin.list_nodes(db, schema)) == 2, what="node b up")
    # b rescues only after seeing the database up for a whole expiry (4 s) itself.
    wait_for(
        lambda: db.execute(
            "SELECT bool_and(started_at < now() - interval '4.5 seconds') FROM pgqueue_nodes"
        ).fetchone()[0],
        timeout=15,
        what="b settled",
    )
    quick = client.enqueue_many([recording.Record.new({"i": i}) for i in range(200)])
    killed_at = time.monotonic()
    workers.kill("a")
    # Rescued means an error entry says so (the job is claimed again at once, so its
    # state may be back to executing before we look).
    wait_for(
        lambda: db.execute(
            "SELECT jsonb_array_length(errors) > 0 FROM pgqueue_jobs WHERE id = %s", [long_job.id]
        ).fetchone()[0],
        timeout=30,
        interval=0.05,
        what="the long job rescued",
    )
    rescue_latency = time.monotonic() - killed_at
    wait_for(
        lambda: states(db, schema) == {"completed": 201}, timeout=60, what="all jobs completed"
    )
    assert time.monotonic() - killed_at >= 15  # b ran the 15 s job from its start
    print(
        f"\nrescue latency after kill -9: {rescue_latency:.2f} s (heartbeat expiry 4 s, rescue every 0.5 s)"
    )
    # Rescued only once the dead node's heartbeat expired, and not much later.
    assert 3.0 <= rescue_latency <= 10.0
    row = db.execute(
        "SELECT attempt, errors, attempted_by FROM pgqueue_jobs WHERE id = %s", [long_job.id]
    ).fetchone()
    assert row[0] == 2 and row[1][0]["error"] == "Rescued" and row[2].startswith("b/")
    runs = runs_per_job(db)
    assert runs[long_job.id] == 1  # a was killed before its run recorded anything
    assert all(runs[j.id] == 1 for j in quick)


def test_sigterm_hands_long_jobs_to_another_node(
    client, runs_table, schema, workers: Workers
) -> None:
    db = runs_table
    workers.start("a", *FAST, "--shutdown-grace", "0.3")
    wait_for(lambda: len(_admin.list_nodes(db, schema)) == 1, what="node a up")
    # Long on a (still running when it stops, however slow the machine), none on b.
    jobs = client.enqueue_many(
        [recording.Record.new({"sleep": 120, "sleep_on": "a", "i": i}) for i in range(3)]
    )
    wait_for(lambda: states(db, schema).get("executing") == 3, what="a runs three long jobs")
    workers.start("b", *FAST)
    wait_for(lambda: len(_admin.list_nodes(db, schema)) == 2, what="node b up")
    assert workers.terminate("a") == 0
    assert "handed 3 unfinished job(s) back" in workers.log("a")
    wait_for(lambda: states(db, schema) == {"completed": 3}, timeout=30, what="completed elsewhere")
    for job in jobs:
        assert node_of(db, job.id).startswith("b/")
    assert runs_per_job(db) == {j.id: 1 for j in jobs}
    # Handed back, not failed: the attempt was given back, so b ran attempt 1.
    assert {r[0] for r in db.execute("SELECT attempt FROM pgqueue_jobs")} == {1}


def test_terminating_every_backend_repeatedly_loses_nothing(
    client, runs_table, schema, workers: Workers
) -> None:
    db = runs_table
    total = 3000
    client.enqueue_many(
        [(recording.Record if i % 2 else recording.RecordSync).new({"i": i}) for i in range(total)]
    )
    workers.start("a", *FAST)
    workers.start("b", *FAST)
    wait_for(
        lambda: states(db, schema).get("completed", 0) > 200, timeout=30, what="the run under way"
    )
    killed = 0
    for _ in range(8):
        killed += db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'pgqueue:%%'"
        ).fetchone()[0]
        time.sleep(0.4)
    wait_for(
        lambda: states(db, schema) == {"completed": total},
        timeout=120,
        interval=0.2,
        what="all completed",
    )
    assert killed >= 8
    runs = runs_per_job(db)
    assert len(runs) == total and set(runs.values()) == {1}, {
        k: v for k, v in runs.items() if v != 1
    }
    for name in ("a", "b"):
        assert workers.terminate(name) == 0


def test_without_notifications_polling_bounds_the_latency(
    client, runs_table, schema, workers: Workers
) -> None:
    db = runs_table
    workers.start("a", *FAST, "--no-listen", "--poll-interval", "0.3")
    wait_for(lambda: len(_admin.list_nodes(db, schema)) == 1, what="node up")
    for i in range(10):
        recording.Record.enqueue({"i": i}, client=client)
        time.sleep(0.13)
    wait_for(lambda: states(db, schema) == {"completed": 10}, timeout=20, what="all completed")
    latencies = [
        r[0]
        for r in db.execute(
            "SELECT extract(epoch FROM attempted_at - inserted_at) FROM pgqueue_jobs ORDER BY id"
        )
    ]
    # Poll 0.3 s, jittered up to +10 %, plus the claim itself.
    assert max(latencies) < 0.3 * 1.1 + 0.25, latencies
    assert "LISTEN" not in workers.log("a")


@pytest.fixture(scope="module")
def private_pg():
    """A PostgreSQL of this module's own, which the tests may restart and crash."""
    with EmbeddedPostgres() as pg:
        yield pg


@pytest.mark.slow
def test_postgres_restart_mid_run_completes_every_job_once(
    private_pg: EmbeddedPostgres, env, tmp_path
) -> None:
    schema = "restart"
    dsn = private_pg.dsn
    prepare(dsn, schema)
    import pgqueue

    with pgqueue.Client(dsn, schema=schema) as c:
        c.enqueue_many(
            [
                (recording.Record if i % 2 else recording.RecordSync).new({"i": i})
                for i in range(10_000)
            ]
            # Due only after the restart: the stager must have survived it.
            + [recording.Record.new({"late": i}, schedule_in=8) for i in range(50)]
        )
    total = 10_050
    workers = Workers(pg_env_for(env, dsn, schema), tmp_path)
    try:
        workers.start("a", *FAST)
        workers.start("b", *FAST)

        def completed() -> int:
            with psycopg.connect(dsn, autocommit=True) as conn:
                return states(conn, schema).get("completed", 0)

        wait_for(lambda: completed() >= 2500, timeout=120, interval=0.1, what="a quarter done")
        before = completed()
        private_pg.restart("fast")
        back_at = time.monotonic()
        wait_for(
            lambda: completed() > before,
            timeout=60,
            interval=0.05,
            what="progress after the restart",
        )
        resumed = time.monotonic() - back_at
        wait_for(lambda: completed() == total, timeout=300, interval=0.5, what="all completed")
        print(
            f"\nresumed {resumed:.2f} s after PostgreSQL came back ({before} of {total} done before the restart)"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            runs = runs_per_job(conn)
            assert states(conn, schema) == {"completed": total}
        duplicates = {k: v for k, v in runs.items() if v != 1}
        assert len(runs) == total and not duplicates, duplicates
        for name in ("a", "b"):
            assert workers.terminate(name) == 0
    except BaseException:
        print(workers.logs_tail())
        raise
    finally:
        workers.stop_all()


@pytest.mark.slow
def test_killing_the_leader_keeps_cron_at_one_job_per_slot(
    client, runs_table, schema, workers: Workers
) -> None:
    db = runs_table
    cron = ["--cron", "* * * * * *=tests.apps.recording.Noop"]
    for name in ("a", "b", "c"):
        workers.start(name, *FAST, *cron)
    wait_for(lambda: _admin.leader(db, schema), timeout=20, what="a leader")
    wait_for(
        lambda: db.execute("SELECT count(*) FROM pgqueue_cron").fetchone()[0] >= 3,
        timeout=20,
        what="cron running",
    )
    leader = _admin.leader(db, schema)
    victim = leader.split("/")[0]
    killed_at = time.monotonic()
    workers.kill(victim)
    wait_for(
        lambda: (_admin.leader(db, schema) or leader) != leader,
        timeout=20,
        interval=0.05,
        what="a new leader",
    )
    failover = time.monotonic() - killed_at
    time.sleep(4)
    for name in ("a", "b", "c"):
        if name != victim:
            assert workers.terminate(name) == 0
    print(f"\nnew leader {failover:.2f} s after kill -9 of the leader (lease ttl 2 s)")
    assert failover <= 2 + 2 / 3 + 1.0
    slots = [r[0] for r in db.execute("SELECT slot FROM pgqueue_cron ORDER BY slot")]
    per_slot = db.execute(
        "SELECT count(*) FROM pgqueue_jobs WHERE meta ? 'cron' GROUP BY meta->>'cron_slot' HAVING count(*) <> 1"
    ).fetchall()
    assert per_slot == []
    assert db.execute("SELECT count(*) FROM pgqueue_jobs WHERE meta ? 'cron'").fetchone()[0] == len(
        slots
    )
    # No slot was skipped across the failover: the new leader caught up.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
    assert gaps and max(gaps) == 1.0, gaps
