"""Errors for people (issue 4, item 2): every failure of an operator command is one line
on stderr with the right exit code: no traceback, no password.

The long matrices run the command in-process (click's runner, same code path);
``test_each_kind_of_error_in_a_real_process`` proves each kind on the real executable.
"""

from __future__ import annotations

import socket

import psycopg
import pytest

from tests.ops.app import Ok
from tests.ops.support import SECRET, one_line_error, reset, run, run_inline

EVERY_DB_COMMAND = [
    ["inspect"],
    ["inspect", "1"],
    ["inspect", "--state", "discarded", "--json"],
    ["retry", "1"],
    ["retry", "--state", "discarded"],
    ["cancel", "1"],
    ["cancel", "--state", "available"],
    ["pause", "default"],
    ["resume", "default"],
    ["scale", "default", "3"],
    ["prune"],
    ["nodes"],
]


@pytest.fixture(autouse=True)
def _clean(db, schema) -> None:
    reset(db, schema)


def run_all(commands: list[list[str]], env: dict[str, str], code: int) -> list:
    return [run_inline(*command, env=env, code=code) for command in commands]


def test_missing_job_id_is_one_line_exit_1(env) -> None:
    commands = [["inspect", "424242"], ["inspect", "424242", "--json"]]
    commands += [["retry", "424242"], ["cancel", "424242"]]
    for command, proc in zip(commands, run_all(commands, env, 1), strict=True):
        err = one_line_error(proc)
        assert "no job with id 424242" in err or "job 424242 does not exist" in err, command


def test_ids_left_alone_are_named_with_their_state(env, client) -> None:
    job = Ok.enqueue({}, client=client)
    proc = run_inline("retry", str(job.id), "999998", env=env, code=1)
    assert proc.stdout.strip() == "retried 0 job(s)"
    err = one_line_error(proc)
    assert f"job {job.id} is available" in err and "job 999998 does not exist" in err


def test_unknown_queue_is_one_line_exit_1(env, client) -> None:
    Ok.enqueue({}, client=client)  # queue "ops" exists; the typo does not
    commands = [
        ["inspect", "--queue", "no-such-queue"],
        ["retry", "--state", "discarded", "--queue", "no-such-queue"],
        ["cancel", "--state", "available", "--queue", "no-such-queue"],
        ["pause", "ops", "no-such-queue"],
        ["resume", "no-such-queue"],
        ["scale", "no-such-queue", "4"],
    ]
    for command, proc in zip(commands, run_all(commands, env, 1), strict=True):
        assert "unknown queue 'no-such-queue'" in one_line_error(proc), command
    # `pause ops no-such-queue` checked every name before pausing any.
    assert run_inline("inspect", "--json", env=env).stdout.count('"paused": true') == 0


BAD_USAGE = [
    (["inspect", "--state", "bogus"], "'bogus' is not one of"),
    (["inspect", "--limit", "0"], "--limit"),
    (["inspect", "--args", "[1]"], "--args must be a JSON object"),
    (["inspect", "--args", "{nope"], "--args must be a JSON object"),
    (["inspect", "7", "--state", "discarded"], "JOB_ID shows one job"),
    (["inspect", "not-a-number"], "not-a-number"),
    (["inspect", "--exact", "--state", "available"], "--exact applies"),
    (["retry", "--state", "executing"], "'executing' is not one of"),
    (["retry"], "give job ids or --state"),
    (["retry", "1", "--queue", "q"], "go with --state"),
    (["cancel", "--state", "completed"], "'completed' is not one of"),
    (["cancel"], "give job ids or --state"),
    (["prune", "--completed", "soon"], "expected a duration"),
    (["prune", "--discarded", "0s"], "expected a duration > 0"),
    (["scale", "ops", "lots"], "LIMIT must be a whole number"),
    (["scale", "ops", "0"], "LIMIT must be a whole number"),
    (["pause"], "Missing argument"),
    (["worker", "--app", "tests.ops.app", "--metrics-port", "99999"], "--metrics-port"),
    (["worker", "--app", "tests.ops.app", "--log-format", "xml"], "'xml' is not one of"),
    (["no-such-command"], "No such command"),
]


def test_bad_usage_and_bad_filters_are_one_line_exit_2(env) -> None:
    commands = [command for command, _ in BAD_USAGE]
    for (command, needle), proc in zip(BAD_USAGE, run_all(commands, env, 2), strict=True):
        err = one_line_error(proc)
        assert needle in err, (command, err)
        assert "(see `pgqueue " in err and "--help`)" in err, err


def test_unreachable_database_is_one_line_exit_1_without_password(env) -> None:
    bad = {**env, "DATABASE_URL": f"postgresql://ops:{SECRET}@127.0.0.1:1/prod"}
    for command, proc in zip(EVERY_DB_COMMAND, run_all(EVERY_DB_COMMAND, bad, 1), strict=True):
        err = one_line_error(proc)  # also: the password appears nowhere
        assert "cannot connect to PostgreSQL at ops@127.0.0.1:1/prod" in err, command


def test_never_migrated_schema_says_run_migrate(env, dsn) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS ops_never_migrated CASCADE")
    bad = {**env, "PGQUEUE_SCHEMA": "ops_never_migrated"}
    for command, proc in zip(EVERY_DB_COMMAND, run_all(EVERY_DB_COMMAND, bad, 1), strict=True):
        err = one_line_error(proc)
        assert "run `pgqueue migrate --schema ops_never_migrated`" in err, command


def test_metrics_port_in_use_is_one_line_exit_1(env) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("worker", "--app", "tests.ops.app", "--metrics-port", str(port), env=env, code=1)
    assert one_line_error(proc).startswith(f"error: cannot serve metrics on 127.0.0.1:{port}")


def test_each_kind_of_error_in_a_real_process(env, dsn, client) -> None:
    Ok.enqueue({}, client=client)
    unreachable = {**env, "DATABASE_URL": f"postgresql://ops:{SECRET}@127.0.0.1:1/prod"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS ops_never_migrated CASCADE")
    unmigrated = {**env, "PGQUEUE_SCHEMA": "ops_never_migrated"}
    cases = [
        (["inspect", "424242"], env, 1, "no job with id 424242"),
        (["retry", "--state", "discarded", "--queue", "nope"], env, 1, "unknown queue 'nope'"),
        (["inspect", "--state", "bogus"], env, 2, "'bogus' is not one of"),
        (["cancel", "1"], unreachable, 1, "cannot connect to PostgreSQL at ops@127.0.0.1:1/prod"),
        (["inspect"], unmigrated, 1, "run `pgqueue migrate --schema ops_never_migrated`"),
    ]
    for command, environment, code, needle in cases:
        assert needle in one_line_error(run(*command, env=environment, code=code)), command
