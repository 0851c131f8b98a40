"""Outages don't fill the dead letter: a broker or a store goes away mid-run, then returns.

A ``pgqueue worker`` process runs the built-in workers with a tight attempt budget
(4) and a fast backoff (0.2 s doubling), so that without the circuit breaker every job
caught by the outage would be discarded within two seconds. The outage lasts until the
breaker has opened and at least two probes have failed; then the server comes back and
every job must end ``completed``, every message in both bound queues, every object
stored and verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from psycopg import sql

from pgqueue.builtins import AmqpFanout, B2Upload, pipeline_spec
from tests.builtins import tight_app
from tests.builtins.conftest import Fanout
from tests.helpers import states, wait_for

ATTEMPTS = tight_app.ATTEMPTS
FAST = {
    "PGQUEUE_BREAKER_THRESHOLD": "3",
    "PGQUEUE_BREAKER_COOLDOWN": "1",
    "PGQUEUE_BUILTINS_BACKOFF_BASE": "0.2",
    "PGQUEUE_BUILTINS_BACKOFF_CAP": "2",
}


def snoozed(db, schema: str) -> int:
    """Jobs that snoozed at least once because their destination's circuit was open."""
    query = sql.SQL("SELECT count(*) FROM {}.pgqueue_jobs WHERE meta ? 'breaker_snoozes'")
    return db.execute(query.format(sql.Identifier(schema))).fetchone()[0]


def probe_errors(db, schema: str) -> list[str]:
    """What the failed probes met, as their jobs' meta keeps it (``breaker_error``)."""
    query = sql.SQL(
        "SELECT meta->>'breaker_error' FROM {}.pgqueue_jobs WHERE meta ? 'breaker_error'"
    )
    return [r[0] for r in db.execute(query.format(sql.Identifier(schema))).fetchall()]


def assert_probes_said_why(db, schema: str, destination: str, secret: str) -> None:
    """The failed probes (two at least, see outage_seen) left their error, naming the
    destination, never a secret."""
    errors = probe_errors(db, schema)
    assert any(destination in e for e in errors), errors
    assert not any(secret in e for e in errors)


def completed(db, schema: str, n: int):
    return lambda: states(db, schema).get("completed", 0) >= n


def unfinished(db, schema: str) -> list[tuple]:
    """The jobs not yet completed, for a failure's message: where each one waits."""
    query = sql.SQL(
        "SELECT id, worker, state::text, attempt, max_attempts, scheduled_at - now(),"
        " attempted_at - now(), meta, errors->-1->>'message' FROM {}.pgqueue_jobs"
        " WHERE state <> 'completed' ORDER BY id"
    )
    return db.execute(query.format(sql.Identifier(schema))).fetchall()


def wait_all_completed(db, schema: str, n: int, worker, timeout: float, what: str) -> None:
    """``wait_for`` n completed jobs; on a time-out, say which jobs wait where and what
    the worker logged last (a CI run leaves nothing else to read)."""
    try:
        wait_for(completed(db, schema, n), timeout=timeout, interval=0.2, what=what)
    except AssertionError as exc:
        tail = "\n".join(worker.log().splitlines()[-60:])
        rows = "\n".join(map(repr, unfinished(db, schema)))
        raise AssertionError(f"{exc}\nunfinished jobs:\n{rows}\nworker log tail:\n{tail}") from None


def outage_seen(worker, destination: str):
    """The breaker opened, and at least two probes failed while the server was away."""

    def check() -> bool:
        log = worker.log()
        return (
            f"{destination}: closed -> open" in log
            and log.count(f"{destination}: half_open -> open") >= 2
        )

    return check


def assert_no_job_burnt_its_budget(db, schema: str) -> None:
    """Everything completed; snoozes gave their attempts back; few attempts failed."""
    assert list(states(db, schema)) == ["completed"]
    rows = db.execute(
        sql.SQL(
            "SELECT attempt, max_attempts, coalesce((meta->>'breaker_snoozes')::int, 0),"
            " jsonb_array_length(errors) FROM {}.pgqueue_jobs"
        ).format(sql.Identifier(schema))
    ).fetchall()
    for attempt, max_attempts, snoozes, errors in rows:
        assert max_attempts == ATTEMPTS + snoozes  # each snooze kept the budget
        assert attempt == errors + snoozes + 1  # the last attempt succeeded
        assert errors < ATTEMPTS


def test_broker_outage_snoozes_jobs_and_every_message_arrives(
    private_rabbit, client, db, schema, env, start_worker
) -> None:
    f = Fanout(private_rabbit.url)
    f.declare()
    destination = f"amqp://guest@127.0.0.1:{private_rabbit.port}/%2F"
    worker_env = {
        **env,
        **FAST,
        "PGQUEUE_AMQP_URL": private_rabbit.url,
        "PGQUEUE_AMQP_EXCHANGE": f.exchange,
    }
    try:
        first = client.enqueue_many(
            [AmqpFanout.new({"n": i}, max_attempts=ATTEMPTS) for i in range(20)]
        )
        worker = start_worker(worker_env, queues="default:5")
        wait_for(completed(db, schema, 20), timeout=60, interval=0.1, what="first batch")

        private_rabbit.stop_app()
        try:
            second = client.enqueue_many(
                [AmqpFanout.new({"n": i}, max_attempts=ATTEMPTS) for i in range(20, 60)]
            )
            wait_for(outage_seen(worker, destination), timeout=60, interval=0.1, what="breaker")
            wait_for(lambda: snoozed(db, schema) >= 30, timeout=60, interval=0.1, what="snoozes")
            assert "discarded" not in states(db, schema)
        finally:
            back = time.monotonic()
            private_rabbit.start_app()
        wait_all_completed(db, schema, 60, worker, timeout=90, what="all completed")
        recovery = time.monotonic() - back
        print(f"broker outage: all 60 jobs completed {recovery:.1f} s after the broker returned")
        assert worker.alive()
        assert f"{destination}: half_open -> closed" in worker.log()
        messages = {q: f.drain(q) for q in f.queues}
    finally:
        f.delete()
    assert_no_job_burnt_its_budget(db, schema)
    assert_probes_said_why(db, schema, destination, ":guest@")
    ids = {str(j.id) for j in first + second}
    for queue, got in messages.items():
        assert ids <= {props.message_id for props, _ in got}, queue  # at least once each
        assert all(props.delivery_mode == 2 for props, _ in got)


def test_storage_outage_snoozes_jobs_and_every_object_is_stored(
    seaweed, bucket, b2_env, client, db, schema, env, start_worker, tmp_path: Path
) -> None:
    files = []
    for i in range(30):
        path = tmp_path / f"f{i}"
        path.write_bytes(os.urandom(1000 + 997 * i))
        files.append(path)
    worker_env = {**env, **FAST, **b2_env}
    destination = f"s3:{seaweed.endpoint}/{bucket}"

    def specs(paths):
        return [
            B2Upload.new({"file": {"path": str(p)}, "key": p.name}, max_attempts=ATTEMPTS)
            for p in paths
        ]

    client.enqueue_many(specs(files[:10]))
    worker = start_worker(worker_env, queues="default:5")
    wait_for(completed(db, schema, 10), timeout=60, interval=0.1, what="first batch")
    seaweed.stop(kill=True)
    try:
        client.enqueue_many(specs(files[10:]))
        wait_for(outage_seen(worker, destination), timeout=60, interval=0.1, what="breaker")
        wait_for(lambda: snoozed(db, schema) >= 15, timeout=60, interval=0.1, what="snoozes")
        assert "discarded" not in states(db, schema)
    finally:
        back = time.monotonic()
        seaweed.start()
    wait_all_completed(db, schema, 30, worker, timeout=90, what="all completed")
    print(
        f"storage outage: all 30 uploads completed {time.monotonic() - back:.1f} s after S3 returned"
    )
    assert worker.alive() and f"{destination}: half_open -> closed" in worker.log()
    assert_no_job_burnt_its_budget(db, schema)
    assert_probes_said_why(db, schema, destination, seaweed.secret_key)
    s3 = seaweed.client()
    for path in files:
        data = path.read_bytes()
        head = s3.head_object(Bucket=bucket, Key=path.name)
        assert head["ContentLength"] == len(data)
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert s3.get_object(Bucket=bucket, Key=path.name)["Body"].read() == data


@pytest.mark.slow
def test_the_whole_pipeline_survives_a_broker_and_a_storage_outage(
    private_rabbit, seaweed, bucket, b2_env, client, db, schema, env, start_worker, tmp_path: Path
) -> None:
    f = Fanout(private_rabbit.url)
    f.declare()
    worker_env = {
        **env,
        **FAST,
        **b2_env,
        "PGQUEUE_AMQP_URL": private_rabbit.url,
        "PGQUEUE_AMQP_EXCHANGE": f.exchange,
        "PGQUEUE_B2_MULTIPART_THRESHOLD": "6MiB",
        "PGQUEUE_B2_PART_SIZE": "5MiB",
    }
    files = []
    for i in range(40):
        path = tmp_path / f"upload-{i}.bin"
        # A few files big enough for multipart uploads.
        path.write_bytes(os.urandom(7 * 1024 * 1024 if i % 10 == 0 else 2000 + i))
        files.append(path)
    steps = [tight_app.TightB2Upload, tight_app.TightAmqpFanout]

    def enqueue(paths):
        return client.enqueue_many(
            [
                pipeline_spec(
                    str(p),
                    steps,
                    key=f"u/{p.name}",
                    context={"name": p.name},
                    max_attempts=ATTEMPTS,
                )
                for p in paths
            ]
        )

    s3_dest = f"s3:{seaweed.endpoint}/{bucket}"
    amqp_dest = f"amqp://guest@127.0.0.1:{private_rabbit.port}/%2F"
    roots = enqueue(files[:10])
    worker = start_worker(worker_env, queues="default:6", app="tests.builtins.tight_app")
    try:
        wait_for(completed(db, schema, 30), timeout=120, interval=0.2, what="first pipelines")
        private_rabbit.stop_app()
        try:
            seaweed.stop(kill=True)
            try:
                roots += enqueue(files[10:])
                wait_for(outage_seen(worker, s3_dest), timeout=90, interval=0.2, what=s3_dest)
                assert "discarded" not in states(db, schema)
            finally:
                seaweed.start()
            # Uploads resume while the broker is still away: its breaker opens in turn.
            wait_for(outage_seen(worker, amqp_dest), timeout=120, interval=0.2, what=amqp_dest)
            assert "discarded" not in states(db, schema)
        finally:
            private_rabbit.start_app()
        wait_all_completed(db, schema, 120, worker, timeout=240, what="every step")
        messages = {q: f.drain(q) for q in f.queues}
    finally:
        f.delete()
    assert_no_job_burnt_its_budget(db, schema)
    assert_probes_said_why(db, schema, s3_dest, seaweed.secret_key)
    assert_probes_said_why(db, schema, amqp_dest, ":guest@")
    s3 = seaweed.client()
    for path in files:
        head = s3.head_object(Bucket=bucket, Key=f"u/{path.name}")
        assert head["Metadata"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for got in messages.values():
        events = {json.loads(body)["context"]["name"] for _, body in got}
        assert events >= {p.name for p in files}
    assert len(roots) == 40
