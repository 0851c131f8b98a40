"""The worker runtime against a real database: every state transition and its guards."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import psycopg
import psycopg_pool
import pytest

import pgqueue
from pgqueue._backoff import JITTER
from pgqueue._engine import Engine
from pgqueue._outcomes import Transition
from tests.helpers import job_row, run_node, states


class Succeeds(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> str:
        job.update_meta({"result": "ok", "attempt_seen": job.attempt})
        return "done"


class SyncSucceeds(pgqueue.Worker):
    def perform(self, job: pgqueue.Job) -> None:
        return None


class FailsOnce(pgqueue.Worker):
    def backoff(self, job: pgqueue.Job) -> float:
        return 0.1

    def perform(self, job: pgqueue.Job) -> None:
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")


class AlwaysFails(pgqueue.Worker):
    max_attempts = 3

    def backoff(self, job: pgqueue.Job) -> float:
        return 0.05

    async def perform(self, job: pgqueue.Job) -> None:
        raise ValueError(f"broken on attempt {job.attempt}")


class DefaultBackoff(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> None:
        raise RuntimeError("fails with the default backoff")


class Snoozes(pgqueue.Worker):
    max_attempts = 2

    async def perform(self, job: pgqueue.Job) -> object:
        if job.meta.get("snoozes", 0) < 3:
            job.update_meta({"snoozes": job.meta.get("snoozes", 0) + 1})
            return pgqueue.Snooze(0.05)
        return None


class Cancels(pgqueue.Worker):
    def perform(self, job: pgqueue.Job) -> None:
        raise pgqueue.Cancel("order was withdrawn")


class Discards(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> object:
        return pgqueue.Discard("malformed input")


class SlowAsync(pgqueue.Worker):
    timeout = 0.2
    max_attempts = 1

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(30)


class SlowSync(pgqueue.Worker):
    timeout = 0.2
    max_attempts = 1

    def perform(self, job: pgqueue.Job) -> None:
        deadline = time.monotonic() + 30
        while not job.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)


class LongAsync(pgqueue.Worker):
    timeout = None

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(60)


class LongSync(pgqueue.Worker):
    timeout = None

    def perform(self, job: pgqueue.Job) -> None:
        deadline = time.monotonic() + 60
        while not job.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)


class NulMessage(pgqueue.Worker):
    max_attempts = 1

    async def perform(self, job: pgqueue.Job) -> None:
        raise ValueError("bad byte \x00 in the message")


class NanMeta(pgqueue.Worker):
    max_attempts = 1

    async def perform(self, job: pgqueue.Job) -> None:
        job.update_meta({"ratio": float("nan")})


class MetaChangedAfterUpdate(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> None:
        stats: dict = {"files": 1}
        job.update_meta({"stats": stats})
        # After the update: a key JSON cannot hold, and a dict holding itself.
        stats[("not", "a", "string")] = 2
        stats["itself"] = stats


class UnencodableMetaUpdates(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> None:
        # Past update_meta's checks: an outcome the node cannot encode for its ack.
        job.meta_updates = {"bad": {(1, 2): "a tuple key"}}


class ExitsAsync(pgqueue.Worker):
    max_attempts = 1

    async def perform(self, job: pgqueue.Job) -> None:
        raise SystemExit(3)


class ExitsSync(pgqueue.Worker):
    max_attempts = 1

    def perform(self, job: pgqueue.Job) -> None:
        raise KeyboardInterrupt if job.args["how"] == "interrupt" else SystemExit(3)


class Ordered(pgqueue.Worker):
    seen: list[int] = []

    async def perform(self, job: pgqueue.Job) -> None:
        Ordered.seen.append(job.args["n"])


def final(db: psycopg.Connection, schema: str, n: int = 1, state: str | None = None):
    def check() -> bool:
        s = states(db, schema)
        if state is not None:
            return s.get(state, 0) >= n
        return sum(s.get(k, 0) for k in ("completed", "discarded", "cancelled")) >= n

    return check


def test_async_job_completes_and_records_meta(client, db, dsn, schema) -> None:
    job = Succeeds.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema))
    row = job_row(db, schema, job.id)
    assert row["state"] == "completed" and row["attempt"] == 1 and row["completed_at"] is not None
    assert row["meta"] == {"result": "ok", "attempt_seen": 1}
    assert row["errors"] == []


def test_sync_job_completes_on_a_thread(client, db, dsn, schema) -> None:
    job = SyncSucceeds.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema))
    assert job_row(db, schema, job.id)["state"] == "completed"


def test_failure_retries_then_completes(client, db, dsn, schema) -> None:
    job = FailsOnce.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema), poll_interval=0.1)
    row = job_row(db, schema, job.id)
    assert row["state"] == "completed" and row["attempt"] == 2
    (error,) = row["errors"]
    assert error["attempt"] == 1 and error["error"] == "RuntimeError"
    assert error["message"] == "first attempt fails" and "Traceback" in error["traceback"]


def test_exhausted_attempts_are_discarded_with_every_error(client, db, dsn, schema) -> None:
    job = AlwaysFails.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema), poll_interval=0.1)
    row = job_row(db, schema, job.id)
    assert row["state"] == "discarded" and row["attempt"] == 3 and row["discarded_at"] is not None
    assert [e["message"] for e in row["errors"]] == [f"broken on attempt {n}" for n in (1, 2, 3)]


def test_default_backoff_is_within_its_jitter_bounds(client, db, dsn, schema) -> None:
    job = DefaultBackoff.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema, state="retryable"))
    row = job_row(db, schema, job.id)
    wait = (row["scheduled_at"] - row["attempted_at"]).total_seconds()
    assert 15 * (1 - JITTER) - 0.5 <= wait <= 15 * (1 + JITTER) + 0.5


def test_snooze_keeps_the_attempt_budget(client, db, dsn, schema) -> None:
    job = Snoozes.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema), poll_interval=0.05)
    row = job_row(db, schema, job.id)
    # Four runs on a budget of two attempts: each snooze added one back.
    assert row["state"] == "completed" and row["attempt"] == 4 and row["max_attempts"] == 5
    assert row["max_attempts"] - row["attempt"] == 2 - 1
    assert row["meta"]["snoozes"] == 3 and row["errors"] == []


def test_cancel_and_discard_outcomes(client, db, dsn, schema) -> None:
    c = Cancels.enqueue({}, client=client)
    d = Discards.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema, 2))
    crow, drow = job_row(db, schema, c.id), job_row(db, schema, d.id)
    assert (
        crow["state"] == "cancelled"
        and crow["cancelled_at"]
        and crow["errors"][0]["message"] == "order was withdrawn"
    )
    assert (
        drow["state"] == "discarded"
        and drow["attempt"] == 1
        and drow["errors"][0]["error"] == "Discard"
    )


@pytest.mark.parametrize("worker", [SlowAsync, SlowSync])
def test_timeout_fails_the_attempt(client, db, dsn, schema, worker) -> None:
    job = worker.enqueue({}, client=client)
    started = time.monotonic()
    run_node(dsn, schema, final(db, schema))
    assert time.monotonic() - started < 10
    row = job_row(db, schema, job.id)
    assert row["state"] == "discarded"
    assert (
        row["errors"][0]["error"] == "JobTimeout" and "0.2 s timeout" in row["errors"][0]["message"]
    )


def test_unknown_worker_is_retried_then_discarded_never_imported(client, db, dsn, schema) -> None:
    job = client.enqueue("os.system", {"command": "touch /tmp/pwned"}, max_attempts=2)
    db.execute("UPDATE pgqueue_jobs SET errors = errors WHERE id = %s", [job.id])

    def fast_retry() -> bool:  # make the retry due at once instead of after 15 s
        db.execute("UPDATE pgqueue_jobs SET scheduled_at = now() WHERE state = 'retryable'")
        return final(db, schema)()

    run_node(dsn, schema, fast_retry, poll_interval=0.05)
    row = job_row(db, schema, job.id)
    assert row["state"] == "discarded" and row["attempt"] == 2
    assert {e["error"] for e in row["errors"]} == {"UnknownWorker"}
    assert "no worker named 'os.system' is registered" in row["errors"][0]["message"]


def test_priority_orders_the_claim(client, db, dsn, schema) -> None:
    Ordered.seen.clear()
    client.enqueue_many(
        [Ordered.new({"n": n}, priority=p) for n, p in [(1, 9), (2, 0), (3, 5), (4, 0)]]
    )
    run_node(dsn, schema, final(db, schema, 4), queues={"default": 1})
    assert Ordered.seen == [2, 4, 3, 1]


def test_notification_wakes_an_idle_node_long_before_the_poll(client, db, dsn, schema) -> None:
    async def main() -> float:
        node = pgqueue.Node(dsn, schema=schema, queues={"default": 2}, poll_interval=30)
        await node.start()
        try:
            assert node.notifier is not None
            await asyncio.wait_for(node.notifier.connected.wait(), 5)
            await asyncio.sleep(0.2)  # the first poll after connecting is done
            start = time.monotonic()
            await client.enqueue_async(Succeeds, {})
            while states(db, schema).get("completed", 0) < 1:
                await asyncio.sleep(0.005)
            return time.monotonic() - start
        finally:
            await node.stop()
            await client.aclose()

    assert asyncio.run(main()) < 2.0


def test_polling_alone_still_runs_jobs(client, db, dsn, schema) -> None:
    async def main() -> float:
        node = pgqueue.Node(
            dsn, schema=schema, queues={"default": 2}, poll_interval=0.2, listen=False
        )
        await node.start()
        try:
            assert node.notifier is None
            start = time.monotonic()
            await client.enqueue_async(Succeeds, {})
            while states(db, schema).get("completed", 0) < 1:
                await asyncio.sleep(0.005)
            return time.monotonic() - start
        finally:
            await node.stop()
            await client.aclose()

    # Bounded by the poll interval (0.2 s, jittered by 10 %) plus the run itself.
    assert asyncio.run(main()) < 1.0


class WaitsBriefly(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(0.01)


@pytest.mark.py312
def test_jobs_run_and_complete_under_an_eager_task_factory(client, db, dsn, schema) -> None:
    # An eager factory runs a job's first step (all of a job that never waits) inside
    # create_task, before the producer has recorded the task: jobs stuck in executing.
    for i in range(10):
        Succeeds.enqueue({"i": i}, client=client)
        WaitsBriefly.enqueue({"i": i}, client=client)

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        node = pgqueue.Node(dsn, schema=schema, queues={"default": 4}, poll_interval=0.2)
        await node.start()
        try:
            deadline = time.monotonic() + 10
            while states(db, schema).get("completed", 0) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await node.stop()
            await client.aclose()

    asyncio.run(main())
    assert states(db, schema) == {"completed": 20}


def test_stale_ack_after_reclaim_changes_nothing(client, db, dsn, schema) -> None:
    job = Succeeds.enqueue({}, client=client)

    async def main() -> tuple[int, int]:
        pool = await client.apool()
        engine = Engine(pool, schema)
        (first,) = await engine.fetch_jobs("default", 1, "node-a")
        # node-a is presumed dead: the job is rescued and claimed again by node-b.
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE " + schema + ".pgqueue_jobs SET state = 'available' WHERE id = %s", [job.id]
            )
        (second,) = await engine.fetch_jobs("default", 1, "node-b")
        assert (first.attempt, second.attempt) == (1, 2)
        assert (first.attempted_by, second.attempted_by) == ("node-a", "node-b")
        stale = await engine.ack_jobs(
            [Transition(job.id, first.attempt, "discarded", error={"error": "late"})]
        )
        fresh = await engine.ack_jobs([Transition(job.id, second.attempt, "completed")])
        again = await engine.ack_jobs([Transition(job.id, second.attempt, "retryable", delay=1.0)])
        await client.aclose()
        return stale, fresh + 10 * again

    stale, fresh = asyncio.run(main())
    assert stale == 0 and fresh == 1
    row = job_row(db, schema, job.id)
    assert row["state"] == "completed" and row["attempt"] == 2 and row["errors"] == []
    assert row["attempted_by"] == "node-b"


def test_a_claim_completes_only_the_attempts_it_carries(client, db, dsn, schema) -> None:
    """Completions ride the next claim; each lands only on the attempt it names."""
    jobs = [Succeeds.enqueue({"n": n}, client=client) for n in range(4)]

    async def main() -> tuple[list[pgqueue.Job], list[pgqueue.Job], str]:
        pool = await client.apool()
        engine = Engine(pool, schema)
        conn = await engine.connect()
        try:
            await engine.tune_claims(conn)
            mode = (await (await conn.execute("SHOW plan_cache_mode")).fetchone())[0]
            first = await engine.fetch_jobs(Succeeds.queue, 3, "node-a", conn=conn)
            a, b, c = sorted(first, key=lambda j: j.id)
            carried = [
                Transition(c.id, c.attempt, "completed"),  # out of id order on purpose
                Transition(a.id, a.attempt, "completed"),
                Transition(b.id, b.attempt + 1, "completed"),  # not b's attempt
            ]
            # c's attempt was run again after a rescue: the older outcome, still held,
            # must not hide the newer one.
            await conn.execute(
                "UPDATE " + schema + ".pgqueue_jobs SET attempt = 2 WHERE id = %s", [c.id]
            )
            carried += [Transition(c.id, 2, "completed")]
            second = await engine.fetch_jobs(Succeeds.queue, 3, "node-a", carried, conn=conn)
            with pytest.raises(ValueError, match="plain completions"):
                failed = Transition(b.id, b.attempt, "retryable", delay=1.0, error={"e": 1})
                await engine.fetch_jobs(Succeeds.queue, 1, "node-a", [failed], conn=conn)
        finally:
            await conn.close()
        await client.aclose()
        return first, second, mode

    first, second, mode = asyncio.run(main())
    assert mode == "force_generic_plan"
    assert [j.id for j in second] == [jobs[3].id]
    a, b, c = sorted(j.id for j in first)
    assert job_row(db, schema, a)["state"] == "completed"
    assert job_row(db, schema, c)["state"] == "completed"
    assert job_row(db, schema, a)["completed_at"] is not None
    assert job_row(db, schema, b)["state"] == "executing"


def test_claims_behind_pgbouncer_keep_the_session_untouched(dsn, schema) -> None:
    """Without prepared statements (--no-listen, for PgBouncer's transaction mode) a
    session setting would leak to other clients: tune_claims sets nothing there."""

    async def main() -> str:
        pool = psycopg_pool.AsyncConnectionPool(
            dsn, open=False, kwargs={"autocommit": True, "prepare_threshold": None}
        )
        engine = Engine(pool, schema)
        conn = await engine.connect()
        try:
            await engine.tune_claims(conn)
            return (await (await conn.execute("SHOW plan_cache_mode")).fetchone())[0]
        finally:
            await conn.close()

    assert asyncio.run(main()) == "auto"


def test_a_claimed_job_is_its_row_on_either_connection(client, db, dsn, schema) -> None:
    """The claim reads binary results with the worker connection's own jsonb loader and
    builds Job positionally: every field must still be the row's, with Python's types."""
    args = {"path": "ünï/çødé ✓.png", "n": [1, 2.5, None, True], "deep": {"k": '"q"\\'}}
    jobs = [
        Succeeds.enqueue(args, client=client, tags=["img", "a \"b\"", "ö"],
                         meta={"trace": "x"}, priority=3, max_attempts=7)
        for _ in range(2)
    ]  # fmt: skip
    errors = [{"attempt": 1, "error": "E", "message": "ß\nline", "traceback": ""}]
    db.execute(
        "UPDATE " + schema + ".pgqueue_jobs SET errors = %s::jsonb",
        [psycopg.types.json.Jsonb(errors)],
    )

    async def main() -> list[pgqueue.Job]:
        pool = await client.apool()
        engine = Engine(pool, schema)
        conn = await engine.connect()  # a producer lane's connection
        try:
            claimed = await engine.fetch_jobs(Succeeds.queue, 1, "node-a", conn=conn)
        finally:
            await conn.close()
        claimed += await engine.fetch_jobs(Succeeds.queue, 1, "node-a")  # a pool connection
        await client.aclose()
        return claimed

    claimed = asyncio.run(main())
    assert sorted(j.id for j in claimed) == [j.id for j in jobs]
    for job in claimed:
        row = job_row(db, schema, job.id)
        assert job.state == "executing" and type(job.state) is str
        assert (job.worker, job.queue, job.args, job.meta, job.tags, job.errors) == (
            Succeeds.name, Succeeds.queue, args, {"trace": "x"}, ["img", "a \"b\"", "ö"], errors
        )  # fmt: skip
        assert (job.attempt, job.max_attempts, job.priority) == (1, 7, 3)
        for name in ("inserted_at", "scheduled_at", "attempted_at"):
            assert getattr(job, name) == row[name] and getattr(job, name).tzinfo is not None
        assert job.completed_at is None and not job.conflict


def test_stop_hands_unfinished_jobs_back(client, db, dsn, schema) -> None:
    async_job = LongAsync.enqueue({}, client=client)
    sync_job = LongSync.enqueue({}, client=client)
    done = Succeeds.enqueue({}, client=client)

    async def main() -> pgqueue.Node:
        node = pgqueue.Node(dsn, schema=schema, queues={"default": 5}, shutdown_grace=0.05)
        await node.start()
        while (
            states(db, schema).get("executing", 0) < 2 or states(db, schema).get("completed", 0) < 1
        ):
            await asyncio.sleep(0.01)
        await node.stop()
        return node

    node = asyncio.run(main())
    assert {j.id for j in node.handed_back} == {async_job.id, sync_job.id}
    for job in (async_job, sync_job):
        row = job_row(db, schema, job.id)
        assert row["state"] == "available" and row["attempt"] == 0 and row["attempted_by"] is None
    assert job_row(db, schema, done.id)["state"] == "completed"


def test_scheduled_jobs_run_when_due(client, db, dsn, schema) -> None:
    job = Succeeds.enqueue({}, client=client, schedule_in=0.5)
    assert job.state == "scheduled"
    run_node(dsn, schema, final(db, schema), poll_interval=0.1)
    row = job_row(db, schema, job.id)
    assert row["attempted_at"] >= row["inserted_at"] + timedelta(seconds=0.45)


def test_outcomes_the_database_would_refuse_still_land(client, db, dsn, schema) -> None:
    # PostgreSQL text cannot hold NUL and jsonb cannot hold NaN: neither may stall a queue
    # or leave a job executing. The job after them runs as usual.
    nul = NulMessage.enqueue({}, client=client)
    nan = NanMeta.enqueue({}, client=client)
    after = Succeeds.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema, 3), queues={"default": 1})
    row = job_row(db, schema, nul.id)
    assert (
        row["state"] == "discarded" and "bad byte \\0 in the message" in row["errors"][0]["message"]
    )
    row = job_row(db, schema, nan.id)
    assert row["state"] == "discarded" and row["errors"][0]["error"] == "ConfigError"
    assert job_row(db, schema, after.id)["state"] == "completed"


def test_a_job_raising_an_exit_fails_and_the_node_goes_on(client, db, dsn, schema) -> None:
    # SystemExit raised by a job is that attempt's failure, and so is a sync job's
    # KeyboardInterrupt (no signal reaches a job thread: it can only be the job's own).
    # The node keeps running the jobs after them. (In the event loop a KeyboardInterrupt
    # may be a Ctrl-C, which must still stop the process: it is let through.)
    jobs = [
        ExitsAsync.enqueue({}, client=client),
        ExitsSync.enqueue({"how": "interrupt"}, client=client),
        ExitsSync.enqueue({"how": "exit"}, client=client),
    ]
    after = Succeeds.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema, 4), queues={"default": 1})
    for job in jobs:
        row = job_row(db, schema, job.id)
        assert row["state"] == "discarded"
        assert row["errors"][0]["error"] in ("KeyboardInterrupt", "SystemExit")
    assert job_row(db, schema, after.id)["state"] == "completed"


@pytest.mark.parametrize(
    "column, value",
    # JSON deeper than any supported Python's parser goes (3.11: its recursion limit,
    # 1,000; 3.12: under 2,000; 3.13: under 10,000) and that PostgreSQL still holds with
    # its default stack (it refuses 15,000 here).
    [("scheduled_at", "-infinity"), ("args", "[" * 12_000 + "]" * 12_000)],
    ids=["timestamp-out-of-range", "json-too-deep"],
)
def test_a_claimed_row_the_worker_cannot_read_is_discarded(
    client, db, dsn, schema, column, value, caplog
) -> None:
    # Written by SQL past every check of pgqueue's: PostgreSQL holds it, Python cannot
    # read it. It is discarded saying why; the jobs claimed with it run, once each.
    good = [Succeeds.enqueue({}, client=client) for _ in range(3)]
    bad = db.execute(
        f"INSERT INTO pgqueue_jobs (worker, {column}) VALUES (%s, %s) RETURNING id",
        [Succeeds.name, value],
    ).fetchone()[0]
    run_node(dsn, schema, final(db, schema, 4), queues={"default": 5})
    state, errors = db.execute(
        "SELECT state::text, errors FROM pgqueue_jobs WHERE id = %s", [bad]
    ).fetchone()
    assert state == "discarded" and len(errors) == 1
    assert errors[0]["message"].startswith("the claimed row cannot be read: ")
    assert f"job {bad} cannot be read" in caplog.text
    for job in good:
        row = job_row(db, schema, job.id)
        assert row["state"] == "completed" and row["attempt"] == 1


def test_unreadable_rows_that_cannot_be_discarded_hold_up_nothing(
    client, db, dsn, schema, caplog
) -> None:
    # The discard itself fails (here a trigger refuses it): the jobs read with the bad
    # row still run at once; the bad row is the orphan check's to hand back.
    good = [Succeeds.enqueue({}, client=client) for _ in range(3)]
    db.execute(
        "INSERT INTO pgqueue_jobs (worker, scheduled_at) VALUES (%s, '-infinity')", [Succeeds.name]
    )
    db.execute(
        "CREATE FUNCTION refuse_discard() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.state = 'discarded' THEN RAISE EXCEPTION 'no discards today'; END IF;"
        " RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER refuse_discard BEFORE UPDATE ON pgqueue_jobs"
        " FOR EACH ROW EXECUTE FUNCTION refuse_discard()"
    )
    try:
        run_node(dsn, schema, final(db, schema, 3), queues={"default": 5}, timeout=5)
    finally:
        db.execute("DROP TRIGGER refuse_discard ON pgqueue_jobs")
        db.execute("DROP FUNCTION refuse_discard()")
    assert all(job_row(db, schema, j.id)["state"] == "completed" for j in good)
    assert "cannot discard 1 unreadable job(s): no discards today" in caplog.text


def test_meta_is_written_as_it_was_when_updated(client, db, dsn, schema) -> None:
    # The job changed its dict after update_meta into something JSON cannot hold: the
    # update is the copy taken then, and the node's acknowledgements carry on.
    changed = MetaChangedAfterUpdate.enqueue({}, client=client)
    after = Succeeds.enqueue({}, client=client)
    run_node(dsn, schema, final(db, schema, 2), queues={"default": 1})
    row = job_row(db, schema, changed.id)
    assert row["state"] == "completed" and row["meta"] == {"stats": {"files": 1}}
    row = job_row(db, schema, after.id)
    assert row["state"] == "completed" and row["meta"]["result"] == "ok"


def test_an_outcome_that_cannot_be_encoded_does_not_stop_the_acks(
    client, db, dsn, schema, caplog
) -> None:
    # An acknowledgement the node cannot encode is written without its meta; every later
    # outcome (completions with meta go through the acker, not with the claims) lands.
    bad = UnencodableMetaUpdates.enqueue({}, client=client)
    after = [Succeeds.enqueue({}, client=client) for _ in range(3)]
    run_node(dsn, schema, final(db, schema, 4), queues={"default": 1})
    row = job_row(db, schema, bad.id)
    assert row["state"] == "completed" and row["meta"] == {}
    for job in after:
        row = job_row(db, schema, job.id)
        assert row["state"] == "completed" and row["meta"]["result"] == "ok"
    assert f"outcome completed of job {bad.id} cannot be written" in caplog.text
