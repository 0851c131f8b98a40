"""Migrations: from zero to the schema the code expects, idempotent, concurrent-safe."""

from __future__ import annotations

import re
import subprocess
import sys

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

import pgqueue
from pgqueue import NotMigrated, _migrate, _ops
from pgqueue._states import STATES
from pgqueue._unique import unique_key
from pgqueue.sql import queries

PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]


class Mig(pgqueue.Worker):
    queue = "mig"

    def perform(self, job: pgqueue.Job) -> None:
        return None


def fresh(conn: psycopg.Connection, name: str) -> str:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    return name


@pytest.fixture
def conn(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


def test_applies_every_migration_once_and_records_it(conn: psycopg.Connection) -> None:
    schema = fresh(conn, "mig_once")
    applied = _migrate.migrate(conn, schema)
    assert [m.version for m in applied] == [m.version for m in _migrate.available()]
    assert _migrate.migrate(conn, schema) == []
    assert _migrate.applied_versions(conn, schema) == [m.version for m in _migrate.available()]
    _migrate.check_migrated(conn, schema)


def test_the_migrated_schema_is_what_the_code_expects(conn: psycopg.Connection) -> None:
    schema = fresh(conn, 'mig "expect"')
    _migrate.migrate(conn, schema)
    # The enum is exactly the states the code knows.
    labels = conn.execute(
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typname = 'pgqueue_state' ORDER BY e.enumsortorder",
        [schema],
    ).fetchall()
    assert tuple(r[0] for r in labels) == STATES
    # The columns DESIGN §5 lets operators query, plus what the engine needs.
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'pgqueue_jobs'",
            [schema],
        )
    }
    assert {
        "id",
        "state",
        "queue",
        "worker",
        "args",
        "meta",
        "tags",
        "errors",
        "attempt",
        "max_attempts",
        "priority",
        "inserted_at",
        "scheduled_at",
        "attempted_at",
        "completed_at",
    } <= columns
    indexes = {
        r[0]
        for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [schema])
    }
    assert {
        "pgqueue_jobs_fetch_idx",
        "pgqueue_jobs_stage_idx",
        "pgqueue_jobs_unique",
    } <= indexes
    # Every named query is valid SQL against this schema: the planner accepts it.
    q = queries(schema)
    for name in q.names():
        text = getattr(q, name)
        statement = re.sub(r"^\s*--.*\n", "", text, flags=re.MULTILINE)
        if re.match(r"\s*(CREATE|SELECT pg_advisory)", statement):
            continue
        if statement.lstrip().startswith("COPY"):  # not explainable: run it, empty
            with conn.cursor() as cur, cur.copy(text):
                pass
            continue
        if statement.lstrip().startswith("VACUUM"):  # not explainable either: run it
            conn.execute(text)
            continue
        named = re.findall(r"%\((\w+)\)s", text)
        params = {p: None for p in named} if named else [None] * text.count("%s")
        conn.execute("EXPLAIN " + text, params)


def test_concurrent_migrators_apply_each_migration_once(dsn: str, conn: psycopg.Connection) -> None:
    schema = fresh(conn, "mig_race")
    procs = [
        subprocess.Popen(
            [*PGQUEUE, "migrate", "--dsn", dsn, "--schema", schema],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert [r[2] for r in results] == [0] * 6, results
    assert sum("applied 0001_jobs" in r[0] for r in results) == 1
    rows = conn.execute(
        sql.SQL("SELECT version, count(*) FROM {}.pgqueue_migrations GROUP BY version").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    assert all(n == 1 for _, n in rows) and len(rows) == len(_migrate.available())


def test_dry_run_prints_sql_and_changes_nothing(dsn: str, conn: psycopg.Connection) -> None:
    schema = fresh(conn, "mig_dry")
    out = subprocess.run(
        [*PGQUEUE, "migrate", "--dry-run", "--dsn", dsn, "--schema", schema],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'CREATE SCHEMA IF NOT EXISTS "mig_dry";' in out and "CREATE TABLE pgqueue_jobs" in out
    assert (
        conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()[0]
        == 0
    )


def test_unmigrated_schema_says_run_migrate(conn: psycopg.Connection) -> None:
    schema = fresh(conn, "mig_never")
    with pytest.raises(NotMigrated, match="run `pgqueue migrate --schema mig_never`"):
        _migrate.check_migrated(conn, schema)


def test_0005_upgrades_a_populated_table_in_place_and_keeps_every_rule(
    conn: psycopg.Connection,
) -> None:
    # 0005 moves the row checks into domains and the uniqueness window from a generated
    # column into the exclusion constraint's predicate. On a table with jobs in it: no
    # rewrite of the table (the two indexes holding queue are rebuilt), every row as it
    # was, and the same rules after.
    schema = fresh(conn, "mig_0005")
    _migrate.migrate(conn, schema, to=4)
    jobs = sql.Identifier(schema, "pgqueue_jobs")
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (worker, queue, priority, attempt, max_attempts, unique_key,"
            " unique_states, unique_range, state) VALUES"
            " ('w', 'q', 9, 0, 1, NULL, NULL, NULL, 'available'),"
            " ('w', 'q', 0, 3, 20, 'k', '{{available,scheduled}}', numrange(10, 20), 'available'),"
            " ('w', 'q', 0, 1, 20, 'k', '{{available,scheduled}}', numrange(10, 20), 'completed')"
        ).format(jobs)
    )
    columns = sql.SQL(
        "id, state, queue, worker, priority, attempt, max_attempts, unique_key, unique_range"
    )
    before = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(columns, jobs)).fetchall()
    files = "SELECT relname, relfilenode FROM pg_class WHERE relnamespace = %s::regnamespace AND relname IN ('pgqueue_jobs', 'pgqueue_jobs_pkey', 'pgqueue_jobs_stage_idx')"
    storage = conn.execute(files, [schema]).fetchall()

    assert [m.version for m in _migrate.migrate(conn, schema, to=5)] == [5]

    assert conn.execute(files, [schema]).fetchall() == storage
    after = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(columns, jobs)).fetchall()
    assert after == before and isinstance(after[0][4], int) and isinstance(after[0][2], str)
    insert = sql.SQL(
        "INSERT INTO {} (worker, queue, priority, attempt, max_attempts) VALUES (%s, %s, %s, %s, %s)"
    ).format(jobs)
    for bad, name in [
        (("w", "q", 10, 0, 20), "pgqueue_jobs_priority_range"),
        (("w", "q", 0, -1, 20), "pgqueue_jobs_attempt_range"),
        (("w", "q", 0, 0, 0), "pgqueue_jobs_max_attempts_range"),
        (("w", "", 0, 0, 20), "pgqueue_jobs_queue_length"),
        (("x" * 256, "q", 0, 0, 20), "pgqueue_jobs_worker_length"),
    ]:
        with pytest.raises(psycopg.errors.CheckViolation, match=name):
            conn.execute(insert, bad)
    live_window = sql.SQL(
        "INSERT INTO {} (worker, unique_key, unique_states, unique_range, state)"
        " VALUES ('w', 'k', '{{available}}', numrange(15, 25), %s)"
    ).format(jobs)
    with pytest.raises(psycopg.errors.ExclusionViolation, match="pgqueue_jobs_unique"):
        conn.execute(live_window, ["available"])
    conn.execute(live_window, ["completed"])  # outside its unique states: no window
    # The live job leaves its unique states: its window is free again.
    conn.execute(
        sql.SQL("UPDATE {} SET state = 'completed' WHERE id = %s").format(jobs), [before[1][0]]
    )
    conn.execute(live_window, ["available"])


def test_0006_moves_executing_and_completed_counts_to_their_own_indexes(
    conn: psycopg.Connection,
) -> None:
    # 0006 takes executing and completed rows out of the state and queue index (a claim
    # and an ack each write one index entry fewer) and stores the queue in the executing
    # and completed indexes instead. On a populated table: every row as it was, the
    # operators' exact counts unchanged, and each state's count per queue still readable
    # from one index alone.
    schema = fresh(conn, "mig_0006")
    _migrate.migrate(conn, schema, to=5)
    jobs = sql.Identifier(schema, "pgqueue_jobs")
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (state, queue, worker, attempted_by, completed_at, discarded_at,"
            " cancelled_at) SELECT s::{}, 'q' || (g % 3), 'w',"
            " CASE WHEN s = 'executing' THEN 'node-1' END,"
            " CASE WHEN s = 'completed' THEN now() END, CASE WHEN s = 'discarded' THEN now() END,"
            " CASE WHEN s = 'cancelled' THEN now() END"
            " FROM unnest(enum_range(NULL::{})) AS s, generate_series(1, 40) AS g"
        ).format(
            jobs, sql.Identifier(schema, "pgqueue_state"), sql.Identifier(schema, "pgqueue_state")
        )
    )
    rows = sql.SQL("SELECT * FROM {} ORDER BY id").format(jobs)
    before = conn.execute(rows).fetchall()
    counts_before = _ops.queue_overview(conn, schema, exact=True).counts

    assert [m.version for m in _migrate.migrate(conn, schema, to=6)] == [6]

    assert conn.execute(rows).fetchall() == before
    assert _ops.queue_overview(conn, schema, exact=True).counts == counts_before
    assert counts_before["q1"]["executing"] == 14 and counts_before["q0"]["completed"] == 13
    definitions = dict(
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", [schema]
        ).fetchall()
    )
    assert "'executing'" in definitions["pgqueue_jobs_state_queue_idx"]
    assert "'completed'" in definitions["pgqueue_jobs_state_queue_idx"]
    for state in ("executing", "completed"):
        assert "INCLUDE (queue)" in definitions[f"pgqueue_jobs_{state}_idx"]
        conn.execute("SET enable_seqscan = off")
        try:
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    sql.SQL(
                        "EXPLAIN SELECT queue, count(*) FROM {} WHERE state = {} GROUP BY queue"
                    ).format(jobs, sql.Literal(state))
                )
            )
        finally:
            conn.execute("RESET enable_seqscan")
        assert f"Index Only Scan using pgqueue_jobs_{state}_idx" in plan, plan


def test_0007_moves_unique_windows_to_integer_ranges_and_keeps_them(
    conn: psycopg.Connection, dsn: str
) -> None:
    # 0007 enforces uniqueness over the key's two 64-bit halves and a window of
    # milliseconds instead of 0001's numeric line. On a table with unique jobs in it:
    # every window read back from the old line, the rows' other columns as they were,
    # and the new enqueue path meeting the old rows as duplicates.
    schema = fresh(conn, "mig_0007")
    _migrate.migrate(conn, schema, to=6)
    jobs = sql.Identifier(schema, "pgqueue_jobs")
    live = pgqueue.Unique(period=3600)
    now_ms = int(conn.execute("SELECT floor(extract(epoch FROM now()) * 1000)").fetchone()[0])

    def key(args: dict) -> str:
        return unique_key(live, worker=Mig.name, queue="mig", args=args)

    def line(k: str, start: int, period: int | None) -> str:
        base = int(k[:32], 16) * 10**16  # 0001's stretch of the key
        return (
            f"[{base},{base + 10**16})"
            if period is None
            else f"[{base + start},{base + start + period})"
        )

    states = "{scheduled,available,executing,retryable,completed}"
    rows = [
        # (args, state, old window): live now; expired an hour ago; no period;
        # cleared by an operator's retry; not unique; a key pgqueue never writes.
        ({"n": 1}, "available", line(key({"n": 1}), now_ms - 60_000, 3_600_000)),
        ({"n": 2}, "completed", line(key({"n": 2}), now_ms - 7_200_000, 3_600_000)),
        ({"n": 3}, "scheduled", line(key({"n": 3}), 0, None)),
        ({"n": 4}, "available", None),
        ({"n": 5}, "available", None),
        # A second of window that has passed, then a period of 10^13 s (as long as the
        # key's whole stretch) of the same key: no conflict before, none after.
        ({"n": 6}, "completed", line(key({"n": 6}), now_ms - 5_000, 1_000)),
        ({"n": 6}, "available", line(key({"n": 6}), now_ms, 10**16)),
        ({"n": 7}, "available", "empty"),
    ]
    for args, state, window in rows:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, worker, args, state, unique_key, unique_states,"
                " unique_range) VALUES ('mig', %s, %s, %s, %s, %s, %s::numrange)"
            ).format(jobs),
            [Mig.name, Jsonb(args), state, None if args["n"] == 5 else key(args), states, window],
        )
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (worker, unique_key, unique_states, unique_range)"
            " VALUES ('legacy', 'k', '{{available}}', numrange(10, 20))"
        ).format(jobs)
    )
    kept = sql.SQL(
        "SELECT id, state, queue, worker, args, unique_key, unique_states FROM {} ORDER BY id"
    ).format(jobs)
    before = conn.execute(kept).fetchall()

    assert [m.version for m in _migrate.migrate(conn, schema, to=7)] == [7]

    assert conn.execute(kept).fetchall() == before
    windows = conn.execute(
        sql.SQL("SELECT unique_window::text FROM {} ORDER BY id").format(jobs)
    ).fetchall()
    assert [w[0] for w in windows] == [
        f"[{now_ms - 60_000},{now_ms + 3_540_000})",
        f"[{now_ms - 7_200_000},{now_ms - 3_600_000})",
        "(,)",
        None,
        None,
        f"[{now_ms - 5_000},{now_ms - 4_000})",
        f"[{now_ms},{now_ms + 10**16})",
        None,
        "[10,20)",
    ]
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'pgqueue_jobs'",
            [schema],
        )
    }
    assert "unique_range" not in columns
    # The enqueue path of this release meets the migrated rows: the live window and the
    # one without a period are duplicates; the expired window and the cleared one are not.
    with pgqueue.Client(dsn, schema=schema) as client:
        for n, existing in [
            (1, before[0][0]),
            (3, before[2][0]),
            (6, before[6][0]),
            (2, None),
            (4, None),
        ]:
            job = Mig.enqueue({"n": n}, client=client, unique=live)
            assert job.conflict == (existing is not None), n
            assert existing is None or job.id == existing
        # The same again in one batch: now every one is a duplicate.
        again = client.enqueue_many([Mig.new({"n": n}, unique=live) for n in (1, 2, 3, 4, 6)])
        assert all(j.conflict for j in again)
    # The constraint itself holds on the migrated rows.
    with pytest.raises(psycopg.errors.ExclusionViolation, match="pgqueue_jobs_unique"):
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (worker, unique_key, unique_states, unique_key_hi, unique_key_lo,"
                " unique_window) SELECT 'w', unique_key, unique_states, unique_key_hi,"
                " unique_key_lo, int8range(%s, %s) FROM {} WHERE id = %s"
            ).format(jobs, jobs),
            [now_ms, now_ms + 1, before[0][0]],
        )
