"""Many nodes through one database: heartbeats, the leader lease, rescue, pruning,
cron, queue controls and cancellation — in-process nodes with test-sized timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

import pgqueue
from pgqueue import _admin
from pgqueue._coordination import Coordination
from pgqueue._heartbeat import Heartbeat
from pgqueue._leader import Leader, Vacuumer
from tests.helpers import await_for, job_row, states

FAST: dict[str, Any] = {
    "poll_interval": 0.2,
    "heartbeat_interval": 0.2,
    "heartbeat_expiry": 1.0,
    "lease_ttl": 0.9,
    "rescue_interval": 0.2,
}


class Quick(pgqueue.Worker):
    async def perform(self, job: pgqueue.Job) -> None:
        return None


class Long(pgqueue.Worker):
    timeout = None

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(job.args.get("sleep", 60))


class LongSync(pgqueue.Worker):
    timeout = None

    def perform(self, job: pgqueue.Job) -> str:
        deadline = time.monotonic() + job.args.get("sleep", 60)
        while time.monotonic() < deadline and not job.cancel_requested:
            time.sleep(0.01)
        return "finished"


@asynccontextmanager
async def nodes(
    dsn: str, schema: str, count: int = 1, **options: Any
) -> AsyncIterator[list[pgqueue.Node]]:
    started = [
        pgqueue.Node(dsn, schema=schema, name=f"n{i}", **{**FAST, **options}) for i in range(count)
    ]
    for node in started:
        await node.start()
    try:
        yield started
    finally:
        for node in started:
            await node.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def wait_states(db: psycopg.Connection, schema: str, **expected: int) -> None:
    seen: dict[str, int] = {}

    async def check() -> bool:
        seen.clear()
        seen.update(await asyncio.to_thread(states, db, schema))
        return all(seen.get(k, 0) == v for k, v in expected.items())

    try:
        await await_for(check, timeout=20, what=f"states {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen}") from None


def test_nodes_register_heartbeat_and_leave(client, db, dsn, schema) -> None:
    async def main() -> None:
        async with nodes(dsn, schema, 2) as (a, b):
            listed = {n["name"]: n for n in _admin.list_nodes(db, schema)}
            assert set(listed) == {a.id, b.id} and all(n["alive"] for n in listed.values())
            first = listed[a.id]["heartbeat_at"]
            await await_for(
                lambda: asyncio.to_thread(
                    lambda: (
                        {n["name"]: n for n in _admin.list_nodes(db, schema)}[a.id]["heartbeat_at"]
                        > first
                    )
                )
            )
        assert _admin.list_nodes(db, schema) == []

    run(main())


def test_one_leader_at_a_time_and_a_stopping_leader_hands_over(client, db, dsn, schema) -> None:
    async def main() -> None:
        async with nodes(dsn, schema, 3) as started:
            await await_for(lambda: asyncio.to_thread(_admin.leader, db, schema), what="a leader")
            leader_id = _admin.leader(db, schema)
            holders = [n for n in started if n.leader.is_leader()]
            assert [n.id for n in holders] == [leader_id]
            old = holders[0]
            t0 = time.monotonic()
            await old.stop()
            others = [n for n in started if n is not old]
            await await_for(
                lambda: asyncio.sleep(0, any(n.leader.is_leader() for n in others)),
                what="a new leader",
            )
            # Released, not expired: taken at the next renewal (ttl / 3), not after the ttl.
            assert time.monotonic() - t0 < 0.9
            assert sum(n.leader.is_leader() for n in others) == 1

    run(main())


def test_only_the_owner_renews_and_a_lost_lease_stops_duties(client, db, dsn, schema) -> None:
    async def main() -> None:
        async with nodes(dsn, schema, 1) as (node,):
            await await_for(lambda: asyncio.sleep(0, node.leader.is_leader()), what="leadership")
            coordination: Coordination = node.coordination
            assert not await coordination.take_leadership("intruder", 30)
            # Someone else holds a fresh lease (an operator, a split brain): the node's next
            # renewal fails and its duties stop at once.
            db.execute(
                "UPDATE pgqueue_leader SET node = 'intruder', expires_at = now() + interval '1 hour'"
            )
            await await_for(
                lambda: asyncio.sleep(0, not node.leader.is_leader()),
                timeout=2,
                what="leadership lost",
            )
            assert node.leader.is_leader() is False

    run(main())


def test_rescue_returns_jobs_of_dead_nodes_with_an_error(client, db, dsn, schema) -> None:
    lost = Quick.enqueue({}, client=client)
    spent = Quick.enqueue({}, client=client, max_attempts=1)
    db.execute(
        "UPDATE pgqueue_jobs SET state = 'executing', attempt = 1, attempted_by = 'ghost/000000', attempted_at = now()"
    )

    async def main() -> None:
        async with nodes(dsn, schema, 1):
            await wait_states(db, schema, completed=1, discarded=1)

    run(main())
    row = job_row(db, schema, lost.id)
    assert row["state"] == "completed" and row["attempt"] == 2
    assert row["errors"][0]["error"] == "Rescued" and "ghost/000000" in row["errors"][0]["message"]
    dead = job_row(db, schema, spent.id)
    assert dead["state"] == "discarded" and dead["errors"][0]["error"] == "Rescued"


def test_a_long_job_on_a_live_node_is_never_rescued(client, db, dsn, schema) -> None:
    job = Long.enqueue({"sleep": 3.0}, client=client)

    async def main() -> None:
        # Expiry 1 s, rescue every 0.2 s: the job runs three expiries long.
        async with nodes(dsn, schema, 2):
            await wait_states(db, schema, completed=1)

    run(main())
    row = job_row(db, schema, job.id)
    assert row["attempt"] == 1 and row["errors"] == []


def test_pruner_deletes_only_old_finished_jobs(client, db, dsn, schema) -> None:
    jobs = client.enqueue_many([Quick.new({"i": i}) for i in range(6)])
    ids = [j.id for j in jobs]
    db.execute(
        "UPDATE pgqueue_jobs SET state = 'completed', completed_at = now() - interval '2 hours' WHERE id = ANY(%s)",
        [ids[:2]],
    )
    db.execute(
        "UPDATE pgqueue_jobs SET state = 'completed', completed_at = now() WHERE id = %s", [ids[2]]
    )
    db.execute(
        "UPDATE pgqueue_jobs SET state = 'discarded', discarded_at = now() - interval '2 hours' WHERE id = %s",
        [ids[3]],
    )
    db.execute(
        "UPDATE pgqueue_jobs SET state = 'scheduled', scheduled_at = now() + interval '1 day' WHERE id = ANY(%s)",
        [ids[4:]],
    )

    async def main() -> None:
        async with nodes(
            dsn, schema, 1, prune_interval=0.2, prune_ages={"completed": 3600, "discarded": 3600}
        ) as (node,):
            await await_for(lambda: asyncio.sleep(0, node.pruner.pruned >= 3), what="pruned")

    run(main())
    left = {r[0] for r in db.execute("SELECT id FROM pgqueue_jobs")}
    assert left == {ids[2], ids[4], ids[5]}


def _dead_rows(dsn: str, schema: str, client, n: int) -> None:
    """``n`` jobs updated once (``n`` dead rows), on a connection closed at once so its
    statistics reach pg_stat_user_tables without waiting for an idle flush."""
    ids = [j.id for j in client.enqueue_many([Quick.new({"i": i}) for i in range(n)])]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET state = 'completed', completed_at = now() WHERE id = ANY(%s)"
            ).format(sql.Identifier(schema, "pgqueue_jobs")),
            [ids],
        )


def _vacuums(db: psycopg.Connection, schema: str) -> int:
    return db.execute(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'pgqueue_jobs'",
        [schema],
    ).fetchone()[0]


def test_leader_vacuums_the_jobs_table_once_dead_rows_pile_up(client, db, dsn, schema) -> None:
    before = _vacuums(db, schema)
    _dead_rows(dsn, schema, client, 400)

    async def main() -> None:
        async with nodes(dsn, schema, 1, vacuum_dead_rows=100) as (node,):
            await await_for(lambda: asyncio.sleep(0, node.vacuumer.vacuums >= 1), what="vacuum")
            assert node.vacuumer.vacuums == 1  # nothing dead left: no second vacuum
            await asyncio.sleep(1.0)
            assert node.vacuumer.vacuums == 1
        async with nodes(dsn, schema, 1, vacuum_dead_rows=None) as (node,):
            assert node.vacuumer is None

    run(main())
    assert _vacuums(db, schema) == before + 1


def test_vacuum_by_a_role_that_does_not_own_the_table_warns_once_and_resumes_when_it_does(
    client, db, dsn, schema, caplog
) -> None:
    db.execute("DROP ROLE IF EXISTS pgqueue_not_owner")
    db.execute("CREATE ROLE pgqueue_not_owner LOGIN")
    db.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO pgqueue_not_owner").format(sql.Identifier(schema))
    )
    _dead_rows(dsn, schema, client, 200)

    table = sql.SQL("{}.pgqueue_jobs").format(sql.Identifier(schema))
    owner = db.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
        [f'"{schema}".pgqueue_jobs'],
    ).fetchone()[0]
    vacuums_refused: list[int] = []

    async def main() -> Vacuumer:
        conninfo = psycopg.conninfo.make_conninfo(dsn, user="pgqueue_not_owner")
        async with AsyncConnectionPool(
            conninfo, min_size=1, open=False, kwargs={"autocommit": True}
        ) as pool:
            coordination = Coordination(pool, schema)
            leader = Leader(coordination, node="n", ttl=60)
            leader._valid_until = time.monotonic() + 60  # leadership granted for the test
            vacuumer = Vacuumer(leader, coordination, interval=1, min_dead=10)
            await vacuumer.duty()
            await vacuumer.duty()
            vacuums_refused.append(vacuumer.vacuums)
            # Ownership granted while the node runs: the next look vacuums.
            db.execute(sql.SQL("ALTER TABLE {} OWNER TO pgqueue_not_owner").format(table))
            await vacuumer.duty()
            return vacuumer

    try:
        with caplog.at_level("INFO", logger="pgqueue.leader"):
            vacuumer = run(main())
    finally:
        db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(owner)))
        db.execute(
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM pgqueue_not_owner").format(sql.Identifier(schema))
        )
        db.execute("DROP ROLE pgqueue_not_owner")
    assert vacuums_refused == [0] and vacuumer.vacuums == 1
    warnings = [r.getMessage() for r in caplog.records if "cannot vacuum" in r.getMessage()]
    assert len(warnings) == 1 and "does not own" in warnings[0]
    assert any("may vacuum pgqueue_jobs again" in r.getMessage() for r in caplog.records)


def test_admin_prune_in_batches(client, db, schema) -> None:
    client.enqueue_many([Quick.new({"i": i}) for i in range(25)])
    db.execute(
        "UPDATE pgqueue_jobs SET state = 'completed', completed_at = now() - interval '1 hour'"
    )
    assert _admin.prune_jobs(db, schema, ages={"completed": 60}, batch=10) == {
        "completed": 25,
        "cancelled": 0,
        "discarded": 0,
    }


def test_cron_inserts_exactly_one_job_per_slot(client, db, dsn, schema) -> None:
    entry = pgqueue.Cron("* * * * * *", Quick.name, name="every-second")

    async def main() -> None:
        async with nodes(dsn, schema, 2, cron=[entry]):
            await asyncio.sleep(3.5)
        # Two schedulers that both believe they lead cannot double a slot.
        async with nodes(dsn, schema, 1, cron=[entry]) as (node,):
            now = await node.coordination.db_now()
            slot = now.replace(microsecond=0)
            results = await asyncio.gather(
                *(node.coordination.insert_cron_job(entry, slot) for _ in range(5))
            )
            assert sum(r is not None for r in results) <= 1

    run(main())
    per_slot = db.execute(
        "SELECT meta->>'cron_slot', count(*) FROM pgqueue_jobs WHERE meta->>'cron' = 'every-second' GROUP BY 1"
    ).fetchall()
    assert len(per_slot) >= 3 and all(n == 1 for _, n in per_slot)
    slots = db.execute(
        "SELECT count(*), count(DISTINCT slot) FROM pgqueue_cron WHERE name = 'every-second'"
    ).fetchone()
    assert slots[0] == slots[1] == len(per_slot)
    # Each slot row names the job it made.
    unmatched = db.execute(
        "SELECT count(*) FROM pgqueue_cron c LEFT JOIN pgqueue_jobs j ON j.id = c.job_id "
        "WHERE c.name = 'every-second' AND (j.id IS NULL OR j.meta->>'cron_slot' IS NULL)"
    ).fetchone()[0]
    assert unmatched == 0


def test_a_cron_job_wakes_its_queue(client, db, dsn, schema) -> None:
    entry = pgqueue.Cron("0 0 1 1 *", Quick.name, name="new-year", queue="cron-q")
    listener = psycopg.connect(dsn, autocommit=True)
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"{schema}.pgqueue_jobs")))

    async def main() -> None:
        async with nodes(dsn, schema, 1, cron=[entry]) as (node,):
            slot = (await node.coordination.db_now()).replace(microsecond=0)
            assert await node.coordination.insert_cron_job(entry, slot) is not None

    run(main())
    assert "cron-q" in [n.payload for n in listener.notifies(timeout=2.0)]
    listener.close()


def test_pause_is_persisted_and_honoured_by_nodes_started_later(client, db, dsn, schema) -> None:
    client.pause_queue("default")
    job = Quick.enqueue({}, client=client)

    async def main() -> None:
        async with nodes(dsn, schema, 1) as (node,):
            await asyncio.sleep(0.8)
            assert states(db, schema) == {"available": 1} and node.producers["default"].paused
            client.resume_queue("default")
            await wait_states(db, schema, completed=1)
            assert not node.producers["default"].paused
            client.scale_queue("default", 3)
            await await_for(
                lambda: asyncio.sleep(0, node.producers["default"].limit == 3), what="scaled"
            )
            client.scale_queue("default", None)
            await await_for(
                lambda: asyncio.sleep(0, node.producers["default"].limit == 10), what="unscaled"
            )

    run(main())
    assert job_row(db, schema, job.id)["state"] == "completed"
    assert _admin.queue_controls(db, schema)["default"]["paused"] is False


@pytest.mark.parametrize("listen", [True, False])
@pytest.mark.parametrize("worker", [Long, LongSync])
def test_cancel_an_executing_job_on_its_node(client, db, dsn, schema, listen: bool, worker) -> None:
    job = worker.enqueue({"sleep": 60}, client=client)

    async def main() -> float:
        async with nodes(dsn, schema, 1, listen=listen) as (node,):
            await wait_states(db, schema, executing=1)
            t0 = time.monotonic()
            assert client.cancel_jobs([job.id]) == [job.id]
            await await_for(
                lambda: asyncio.sleep(0, not node.producers["default"].running_jobs),
                what="job stopped",
            )
            return time.monotonic() - t0

    took = run(main())
    # A notification stops it at once; without LISTEN the next heartbeat does.
    assert took < (0.5 if listen else 1.5)
    row = job_row(db, schema, job.id)
    assert row["state"] == "cancelled" and row["errors"][-1]["error"] == "Cancelled"


def test_cancel_leaves_finished_jobs_alone(client, db, schema) -> None:
    done = Quick.enqueue({}, client=client)
    db.execute("UPDATE pgqueue_jobs SET state = 'completed' WHERE id = %s", [done.id])
    waiting = Quick.enqueue({}, client=client)
    assert client.cancel_jobs([done.id, waiting.id, 999_999]) == [waiting.id]
    assert job_row(db, schema, done.id)["state"] == "completed"


def test_orphaned_claims_are_handed_back(client, db, dsn, schema) -> None:
    async def main() -> None:
        async with nodes(dsn, schema, 1, queues={"other": 1}) as (node,):
            # A claim whose reply never arrived: executing in this node's name, unknown to it.
            job = Quick.enqueue({}, client=client, queue="default")
            db.execute(
                "UPDATE pgqueue_jobs SET state = 'executing', attempt = 1, attempted_by = %s WHERE id = %s",
                [node.id, job.id],
            )
            await wait_states(db, schema, available=1)
            row = job_row(db, schema, job.id)
            # Released, keeping its attempt number (attempts stay unique per run).
            assert row["attempt"] == 1 and row["attempted_by"] is None

    run(main())


def test_a_claim_begun_while_the_orphan_check_read_is_not_taken_for_an_orphan(
    client, db, dsn, schema
) -> None:
    # A claim starts while the heartbeat reads what the database says this node runs, and
    # commits before that read; its reply is still on its way at the next check. The job
    # it made is then executing in our name and unknown to us at both checks, but it is
    # the claim's, not an orphan: handing it back would have it run twice.
    job = Quick.enqueue({}, client=client)
    claim: dict[str, float] = {}

    def pending() -> set[int]:
        # The last thing before the read: the claim begins and commits now.
        if not claim:
            claim["since"] = time.monotonic()
            db.execute(
                "UPDATE pgqueue_jobs SET state = 'executing', attempt = 1, attempted_by = 'n'"
                " WHERE id = %s",
                [job.id],
            )
        return set()

    released: list[dict[int, int]] = []

    async def on_orphans(orphans: dict[int, int]) -> None:
        released.append(orphans)

    async def main() -> None:
        async with AsyncConnectionPool(
            dsn, min_size=1, open=False, kwargs={"autocommit": True}
        ) as pool:
            heartbeat = Heartbeat(
                Coordination(pool, schema), node="n", interval=0.2, expiry=1.0,
                queues=lambda: {"default": 1}, running_jobs=list, pending=pending,
                oldest_claim=lambda: claim.get("since"), on_controls=lambda _: None,
                on_lost=lambda _: None, on_orphans=on_orphans,
            )  # fmt: skip
            await heartbeat.check()  # the job is read as executing, the claim in flight
            await heartbeat.check()  # the claim that may have made it still waits
            await heartbeat.check()

    run(main())
    assert released == []
    assert job_row(db, schema, job.id)["state"] == "executing"


def test_a_lost_attempt_stops_only_that_attempt(client, db, dsn, schema) -> None:
    # The heartbeat learns that an attempt of a job is no longer ours while a newer
    # attempt of the same job already runs here (the old one ended and the job came back
    # at once): the newer attempt is ours and keeps running.
    job = Long.enqueue({"sleep": 60}, client=client)

    async def main() -> None:
        async with nodes(dsn, schema, 1) as (node,):
            await wait_states(db, schema, executing=1)
            assert job.attempt == 0  # as enqueued; attempt 1 runs
            assert await node.coordination.lost_jobs(node.id, [job]) == {job.id: 0}
            node._drop_lost({job.id}, {job.id: 0})
            await asyncio.sleep(0.3)
            assert [j.attempt for j in node._running_jobs()] == [1]
            node._drop_lost({job.id}, {job.id: 1})
            await await_for(lambda: asyncio.sleep(0, not node._running_jobs()), timeout=0.3)

    run(main())


def test_a_node_survives_its_connections_being_terminated(client, db, dsn, schema) -> None:
    client.enqueue_many([Quick.new({"i": i}) for i in range(300)])

    async def main() -> None:
        async with nodes(dsn, schema, 1) as (node,):
            for _ in range(5):
                db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    [node.application_name],
                )
                await asyncio.sleep(0.3)
            client.enqueue_many([Quick.new({"i": i}) for i in range(300, 400)])
            await wait_states(db, schema, completed=400)

    run(main())
    assert db.execute("SELECT count(*) FROM pgqueue_jobs WHERE attempt <> 1").fetchone()[0] == 0
