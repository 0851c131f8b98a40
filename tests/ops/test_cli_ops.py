"""The operator commands as an operator runs them: inspect, retry, cancel, pause / resume /
scale, prune, nodes; human tables and the documented ``--json``.

``run`` is a real subprocess; ``run_inline`` (click's runner, same code) serves the
repetitive variations so that the suite stays fast.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from psycopg import sql

from pgqueue.testing import drain_queue
from tests.helpers import job_row, wait_for
from tests.ops.app import Boom, Hold, Ok
from tests.ops.support import one_line_error, reset, run, run_inline, worker

STATE_KEYS = {
    "scheduled",
    "available",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
}
JOB_KEYS = {
    "id", "state", "queue", "worker", "attempt", "max_attempts", "priority", "tags",
    "inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at",
    "cancelled_at", "attempted_by", "errors_count", "last_error",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _clean(db, schema) -> None:
    reset(db, schema)


def _set(db, schema: str, assignments: str, ids: list[int]) -> None:
    db.execute(
        sql.SQL("UPDATE {}.pgqueue_jobs SET " + assignments + " WHERE id = ANY(%s)").format(
            sql.Identifier(schema)
        ),
        [ids],
    )


def assert_aligned(text: str) -> None:
    """Every right-aligned numeric column ends where its header ends."""
    lines = text.splitlines()
    header = lines[0]
    for name in ("AVAILABLE", "SCHEDULED", "EXECUTING", "RETRYABLE", "COMPLETED", "DISCARDED"):
        end = header.index(name) + len(name)
        for line in lines[1:]:
            if line.strip():
                assert line[end - 1] != " " and (len(line) == end or line[end] == " "), (name, line)


def test_inspect_overview_counts_ages_and_controls(env, client, db, schema) -> None:
    ops = [Ok.new({"n": i}) for i in range(3)] + [Ok.new({}, schedule_in=3600)]
    mail = [Ok.new({"n": i}, queue="mail") for i in range(3)]
    client.enqueue_many(ops)
    waiting, _, dead = (j.id for j in client.enqueue_many(mail))
    aged = time.monotonic()
    _set(db, schema, "scheduled_at = now() - interval '90 seconds'", [waiting])
    _set(db, schema, "state = 'discarded', discarded_at = now()", [dead])
    assert run("pause", "mail", env=env).stdout.startswith("paused mail")
    assert run_inline("scale", "ops", "3", env=env).stdout.startswith("scaled ops to 3")

    data = json.loads(run("inspect", "--json", env=env).stdout)
    assert set(data) >= {"schema", "queues", "estimated", "table_rows_estimate"}
    assert data["schema"] == schema and data["estimated"] == []
    ops_q, mail_q = data["queues"]["ops"], data["queues"]["mail"]
    assert set(ops_q) == STATE_KEYS | {"oldest_available_s", "paused", "limit"}
    assert (ops_q["available"], ops_q["scheduled"], ops_q["paused"], ops_q["limit"]) == (
        3,
        1,
        False,
        3,
    )
    assert (mail_q["available"], mail_q["discarded"], mail_q["paused"]) == (2, 1, True)
    assert 89 <= mail_q["oldest_available_s"] < 3600
    assert ops_q["oldest_available_s"] < 60

    human = run("inspect", env=env).stdout
    since = time.monotonic() - aged
    assert human.splitlines()[0].split() == [
        "QUEUE", "AVAILABLE", "SCHEDULED", "EXECUTING", "RETRYABLE", "COMPLETED",
        "DISCARDED", "CANCELLED", "OLDEST_AVAILABLE", "CONTROL",
    ]  # fmt: skip
    assert_aligned(human)
    mail_line = next(line for line in human.splitlines() if line.startswith("mail "))
    # The age as minutes and seconds: 90 s when set, plus what the commands since took.
    age = re.search(r"\b(\d+)m(\d\d)s\b", mail_line)
    assert age and mail_line.endswith("paused")
    assert 90 <= int(age[1]) * 60 + int(age[2]) <= 90 + since + 1
    assert next(line for line in human.splitlines() if line.startswith("ops ")).endswith("limit 3")

    run_inline("resume", "mail", env=env)
    run_inline("scale", "ops", "default", env=env)
    data = json.loads(run_inline("inspect", "--json", env=env).stdout)
    assert data["queues"]["mail"]["paused"] is False and data["queues"]["ops"]["limit"] is None


def test_inspect_lists_filter_by_state_queue_worker_tag(env, client, db, schema) -> None:
    a = Ok.enqueue({"k": 1}, client=client, tags=["red", "big"])
    b = Ok.enqueue({"k": 2}, client=client, tags=["blue"])
    c = Boom.enqueue({"k": 3}, client=client, tags=["red"])
    d = Ok.enqueue({"k": 4}, client=client, queue="mail")
    _set(db, schema, "state = 'discarded', discarded_at = now()", [b.id, c.id])

    def ids(*args: str) -> list[int]:
        out = json.loads(run_inline("inspect", *args, "--json", env=env).stdout)
        assert set(out) == {"jobs", "limit", "more"}
        return [j["id"] for j in out["jobs"]]

    assert ids("--state", "discarded") == [c.id, b.id]
    assert ids("--queue", "mail") == [d.id]
    assert ids("--worker", Boom.name) == [c.id]
    assert ids("--tag", "red") == [c.id, a.id]
    assert ids("--tag", "red", "--state", "available") == [a.id]
    assert ids("--args", '{"k": 2}') == [b.id]
    out = json.loads(run("inspect", "--limit", "2", "--json", env=env).stdout)
    assert [j["id"] for j in out["jobs"]] == [d.id, c.id] and out["more"] is True
    assert set(out["jobs"][0]) == JOB_KEYS

    human = run("inspect", "--tag", "red", env=env).stdout.splitlines()
    assert human[0].split() == [
        "ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "TAGS", "STATE_SINCE", "LAST_ERROR",
    ]  # fmt: skip
    assert human[1].split()[:5] == [str(c.id), "discarded", "ops", Boom.name, "0/2"]
    assert "no jobs match" in run_inline("inspect", "--tag", "green", env=env).stdout


def test_inspect_one_job_shows_args_meta_attempts_and_every_traceback(env, client) -> None:
    job = Boom.enqueue({"path": "a.png"}, client=client, meta={"by": "test"})
    assert drain_queue(client, "ops", with_scheduled=True) == {"retryable": 1, "discarded": 1}

    human = run("inspect", str(job.id), env=env).stdout
    assert f"job {job.id}: {Boom.name} in queue ops, discarded" in human
    assert re.search(r"attempt\s+2 of 2", human)
    assert '"path": "a.png"' in human and '"by": "test"' in human
    assert "errors: 2" in human
    for attempt in (1, 2):
        assert f"--- attempt {attempt} at " in human
        assert f"ValueError: boom on attempt {attempt}" in human
    assert human.count("Traceback (most recent call last)") == 2

    data = json.loads(run("inspect", str(job.id), "--json", env=env).stdout)
    assert set(data) == JOB_KEYS | {"args", "meta", "errors"}
    assert data["args"] == {"path": "a.png"} and data["meta"] == {"by": "test"}
    assert [e["attempt"] for e in data["errors"]] == [1, 2]
    assert all("Traceback" in e["traceback"] for e in data["errors"])
    assert data["last_error"]["error"] == "ValueError" and data["errors_count"] == 2
    assert data["discarded_at"].endswith("+00:00")


def test_retry_dead_letter_by_filters_and_ids(env, client, db, schema) -> None:
    jobs = [Boom.enqueue({"n": i}, client=client, tags=["t"] if i else []) for i in range(3)]
    other = Ok.enqueue({}, client=client, queue="mail")
    ids = [j.id for j in jobs]
    _set(db, schema, "state = 'discarded', discarded_at = now(), attempt = 2", [*ids, other.id])

    assert run_inline(
        "retry", "--state", "discarded", "--queue", "ops", "--dry-run", env=env
    ).stdout == ("would retry 3 discarded job(s)\n")
    out = json.loads(run("retry", "--state", "discarded", "--tag", "t", "--json", env=env).stdout)
    assert sorted(out["retried"]) == ids[1:] and out["not_retried"] == {}
    row = job_row(db, schema, ids[1])
    assert (row["state"], row["max_attempts"], row["discarded_at"]) == ("available", 3, None)
    assert job_row(db, schema, ids[0])["state"] == "discarded"

    proc = run_inline("retry", str(ids[0]), str(ids[1]), "--json", env=env, code=1)
    assert json.loads(proc.stdout) == {
        "retried": [ids[0]],
        "not_retried": {str(ids[1]): "available"},
    }
    assert f"job {ids[1]} is available" in one_line_error(proc)
    assert run("retry", "--state", "discarded", env=env).stdout == "retried 1 discarded job(s)\n"


def test_cancel_by_ids_and_by_filter(env, client, db, schema) -> None:
    jobs = client.enqueue_many([Ok.new({"n": i}, tags=["flood"] if i else []) for i in range(4)])
    done = Ok.enqueue({}, client=client)
    _set(db, schema, "state = 'completed', completed_at = now()", [done.id])

    proc = run("cancel", str(jobs[0].id), str(done.id), env=env, code=1)
    assert proc.stdout == f"cancelled 1 job(s): {jobs[0].id}\n"
    assert f"job {done.id} is completed" in one_line_error(proc)
    assert run_inline(
        "cancel", "--state", "available", "--tag", "flood", "--dry-run", env=env
    ).stdout == ("would cancel 3 available job(s)\n")
    out = json.loads(
        run("cancel", "--state", "available", "--tag", "flood", "--json", env=env).stdout
    )
    assert sorted(out["cancelled"]) == [j.id for j in jobs[1:]]
    for job in jobs:
        assert job_row(db, schema, job.id)["state"] == "cancelled"


def test_cancel_stops_an_executing_job_and_nodes_shows_who_runs_what(
    env, client, db, schema
) -> None:
    job = Hold.enqueue({"sleep": 60}, client=client)
    with worker("--queues", "ops:2", "--node", "ops-node-1", env=env) as w:
        wait_for(lambda: job_row(db, schema, job.id)["state"] == "executing", timeout=20)
        nodes = json.loads(run("nodes", "--json", env=env).stdout)["nodes"]
        mine = next(n for n in nodes if n["name"].startswith("ops-node-1"))
        assert mine["alive"] is True and mine["executing"] == 1
        assert {
            "name",
            "queues",
            "started_at",
            "heartbeat_at",
            "alive",
            "leader",
            "executing",
        } <= set(mine)
        human = run_inline("nodes", env=env).stdout.splitlines()
        assert human[0].split()[:4] == ["NODE", "ALIVE", "LEADER", "EXECUTING"]
        assert any(line.startswith("ops-node-1") and " yes " in line for line in human[1:])

        assert run("cancel", str(job.id), env=env).stdout == f"cancelled 1 job(s): {job.id}\n"
        w.wait_line(rf"job {job.id} .*(cancel|no longer)", timeout=20)
        wait_for(
            lambda: (
                json.loads(run_inline("nodes", "--json", env=env).stdout)["nodes"][0]["executing"]
                == 0
            ),
            timeout=20,
        )
    row = job_row(db, schema, job.id)
    assert row["state"] == "cancelled" and row["cancelled_at"] is not None


def test_prune_deletes_old_final_jobs_only(env, client, db, schema) -> None:
    old, fresh, dead = (j.id for j in client.enqueue_many([Ok.new({}) for _ in range(3)]))
    waiting = Ok.enqueue({}, client=client).id
    _set(db, schema, "state = 'completed', completed_at = now() - interval '2 hours'", [old])
    _set(db, schema, "state = 'completed', completed_at = now()", [fresh])
    _set(db, schema, "state = 'discarded', discarded_at = now() - interval '2 hours'", [dead])

    out = json.loads(
        run_inline("prune", "--completed", "1h", "--dry-run", "--json", env=env).stdout
    )
    assert out["would_delete"] == {"completed": 1, "discarded": 0, "cancelled": 0}
    assert out["older_than_s"]["completed"] == 3600
    table = run("prune", "--completed", "1h", "--discarded", "90m", env=env).stdout.splitlines()
    assert table[0].split() == ["STATE", "DELETED", "OLDER_THAN"]
    assert table[1].split() == ["completed", "1", "1h00m"]
    assert table[2].split() == ["discarded", "1", "1h30m"]
    left = {
        r[0]
        for r in db.execute(
            sql.SQL("SELECT id FROM {}.pgqueue_jobs").format(sql.Identifier(schema))
        )
    }
    assert left == {fresh, waiting}
