"""The ``pgqueue`` command as an operator runs it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from psycopg import sql

from tests.apps import recording
from tests.helpers import job_row, states, wait_for

PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]
SECRET = "correct-horse-battery"


def run(
    *args: str, env: dict[str, str], check_code: int | None = 0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PGQUEUE, *args], env=env, capture_output=True, text=True, timeout=120)
    if check_code is not None:
        assert proc.returncode == check_code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def start_worker(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``pgqueue worker`` as a real process, its output captured."""
    return subprocess.Popen(
        [*PGQUEUE, "worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_worker(worker: subprocess.Popen[str]) -> str:
    """SIGTERM, then wait for the exit; returns what the worker wrote to stderr."""
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    return err


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1, proc.stderr
    assert err.startswith("error:") or err.startswith("Usage:") or "Error:" in err, err
    return err


def test_help_lists_every_command(env) -> None:
    out = run("--help", env=env).stdout
    for command in (
        "migrate",
        "worker",
        "enqueue",
        "inspect",
        "retry",
        "cancel",
        "pause",
        "resume",
        "scale",
        "prune",
        "nodes",
    ):
        assert command in out


def test_enqueue_inspect_retry_round_trip(env, db, schema) -> None:
    job_id = int(
        run(
            "enqueue",
            "tests.apps.recording.Record",
            "--args",
            '{"x": 1}',
            "--queue",
            "q1",
            "--priority",
            "3",
            "--max-attempts",
            "2",
            "--tag",
            "cli",
            env=env,
        ).stdout
    )
    row = job_row(db, schema, job_id)
    assert (row["queue"], row["priority"], row["max_attempts"], row["args"], row["tags"]) == (
        "q1",
        3,
        2,
        {"x": 1},
        ["cli"],
    )
    counts = json.loads(run("inspect", "--json", env=env).stdout)
    assert counts["queues"]["q1"]["available"] == 1
    listed = json.loads(run("inspect", "--state", "available", "--json", env=env).stdout)
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    human = run("inspect", env=env).stdout
    assert human.splitlines()[0].split()[:3] == ["QUEUE", "AVAILABLE", "SCHEDULED"]
    db.execute(
        'UPDATE pgqueue_jobs SET state = \'discarded\', attempt = 2, errors = \'[{"attempt": 2, "error": "E", "message": "m", "traceback": "Traceback: here"}]\' WHERE id = %s',
        [job_id],
    )
    shown = run("inspect", str(job_id), env=env).stdout
    assert "discarded" in shown and "Traceback: here" in shown
    assert "retried 1 discarded job(s)" in run("retry", "--state", "discarded", env=env).stdout
    row = job_row(db, schema, job_id)
    assert row["state"] == "available" and row["max_attempts"] == 3


def test_args_postgresql_cannot_store_are_one_line_and_insert_nothing(env, db) -> None:
    # Valid JSON, but jsonb refuses \u0000: the operator hears why, no row is written.
    before = db.execute("SELECT count(*) FROM pgqueue_jobs").fetchone()[0]
    proc = run("enqueue", "w", "--args", '{"a": "x\\u0000y"}', env=env, check_code=1)
    assert "args cannot be stored: PostgreSQL refuses the NUL character" in one_line_error(proc)
    assert db.execute("SELECT count(*) FROM pgqueue_jobs").fetchone()[0] == before


def test_missing_job_id_is_exit_1(env) -> None:
    proc = run("inspect", "999999", env=env, check_code=1)
    assert "no job with id 999999" in one_line_error(proc)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["worker", "--app", "tests.apps.recording", "--queues", "default:zero"], "whole number"),
        (["worker", "--app", "tests.apps.recording", "--queues", "a:1,a:2"], "listed twice"),
        (["worker", "--app", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
        (["enqueue", "w", "--args", "{not json"], "--args must be a JSON object"),
        (["enqueue", "w", "--args", "[1, 2]"], "--args must be a JSON object"),
        (["enqueue", "w", "--priority", "12"], "12"),
        (["retry"], "give job ids or --state"),
    ],
)
def test_bad_usage_is_exit_2(env, args: list[str], needle: str) -> None:
    proc = run(*args, env=env, check_code=2)
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_dsn_is_exit_1_without_password(env) -> None:
    bad = {**env, "DATABASE_URL": f"host=localhost password={SECRET} nonsense_option=1"}
    proc = run("inspect", env=bad, check_code=1)
    err = one_line_error(proc)
    assert (
        "not a valid PostgreSQL connection string" in err
        and SECRET not in proc.stderr + proc.stdout
    )


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["inspect"], ["enqueue", "w"], ["worker", "--app", "tests.apps.recording"]],
)
def test_unreachable_database_is_exit_1_without_password(env, command: list[str]) -> None:
    bad = {**env, "DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:1/prod"}
    proc = run(*command, env=bad, check_code=1)
    err = one_line_error(proc)
    assert "cannot connect to PostgreSQL at app@127.0.0.1:1/prod" in err
    assert SECRET not in proc.stderr + proc.stdout


def test_unmigrated_schema_says_run_migrate(env, dsn) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS never_migrated CASCADE")
    bad = {**env, "PGQUEUE_SCHEMA": "never_migrated"}
    for command in (["inspect"], ["worker", "--app", "tests.apps.recording"]):
        err = one_line_error(run(*command, env=bad, check_code=1))
        assert "run `pgqueue migrate --schema never_migrated`" in err


def test_sigterm_hands_running_jobs_back_and_exits_0(env, client, db, schema) -> None:
    db.execute(sql.SQL(recording.CREATE_RUNS).format(schema=sql.Identifier(schema)))
    jobs = client.enqueue_many(
        [recording.Sleeper.new({"sleep": 60}), recording.SyncSleeper.new({"sleep": 60})]
    )
    worker = start_worker(
        "--app", "tests.apps.recording", "--queues", "default:4", "--shutdown-grace", "0.5",
        env=env,
    )  # fmt: skip
    try:
        wait_for(
            lambda: states(db, schema).get("executing", 0) == 2,
            timeout=20,
            what="both jobs executing",
        )
        started = time.monotonic()
        err = stop_worker(worker)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert time.monotonic() - started < 10
    assert "handed 2 unfinished job(s) back" in err
    for job in jobs:
        row = job_row(db, schema, job.id)
        assert (row["state"], row["attempt"], row["attempted_by"]) == ("available", 0, None)


def _loop_of_a_job(env: dict[str, str], client, db, schema, *options: str) -> str:
    """Run one WhichLoop job through a worker started with ``options``; its loop's module."""
    from tests.apps.loops import WhichLoop

    job = WhichLoop.enqueue({}, client=client)
    worker = start_worker("--app", "tests.apps.loops", "--queues", "default:2", *options, env=env)
    try:
        wait_for(
            lambda: job_row(db, schema, job.id)["state"] == "completed",
            timeout=30,
            what="the job completed",
        )
        err = stop_worker(worker)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    return job_row(db, schema, job.id)["meta"]["loop"]


@pytest.mark.parametrize(
    ("options", "loop"),
    [((), "asyncio"), (("--loop", "asyncio"), "asyncio"), (("--loop", "uvloop"), "uvloop")],
)
def test_worker_runs_jobs_on_the_chosen_event_loop(env, client, db, schema, options, loop) -> None:
    assert _loop_of_a_job(env, client, db, schema, *options).split(".")[0] == loop


def test_asking_for_uvloop_where_it_does_not_import_is_one_line(env, tmp_path) -> None:
    # An interpreter where uvloop does not import (Windows, PyPy, an install without it).
    (tmp_path / "uvloop.py").write_text("raise ImportError('uvloop is not installed here')\n")
    bare = {**env, "PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}"}
    err = one_line_error(
        run("worker", "--app", "tests.apps.loops", "--loop", "uvloop", env=bare, check_code=1)
    )
    assert "--loop uvloop needs uvloop (uvloop is not installed here)" in err
    assert "pip install 'pgqueue[uvloop]'" in err
    proc = run("worker", "--app", "tests.apps.loops", "--loop", "trio", env=env, check_code=2)
    assert "'trio' is not one of" in proc.stderr and "Traceback" not in proc.stderr
