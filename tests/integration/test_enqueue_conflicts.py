"""Unique batches against what else can conflict: a taken id, a concurrent batch."""

from __future__ import annotations

import asyncio
import json
import threading

import psycopg
import pytest
from psycopg import sql

import pgqueue
from pgqueue._engine import COPY_FROM, Engine, insert_params
from pgqueue._unique import MAX_PERIOD
from pgqueue.sql import queries
from tests.helpers import wait_for


class Once(pgqueue.Worker):
    queue = "conflicts"
    unique = pgqueue.Unique(period=300, keys=["k"])

    def perform(self, job: pgqueue.Job) -> None:
        return None


class Plain(pgqueue.Worker):
    queue = "conflicts"

    def perform(self, job: pgqueue.Job) -> None:
        return None


def _take_id(db: psycopg.Connection, job_id: int) -> None:
    """A row with an explicit id ahead of the identity, as a data-only restore leaves."""
    db.execute(
        "INSERT INTO pgqueue_jobs (id, queue, worker, args) VALUES (%s, 'restored', 'w', '{}')",
        (job_id,),
    )


def _rows(db: psycopg.Connection) -> list[tuple]:
    return db.execute("SELECT id, worker, args FROM pgqueue_jobs ORDER BY id").fetchall()


def _batch(taker: str = "plain") -> list[pgqueue.JobSpec]:
    """Three jobs, which draw ids 1, 2, 3 in input order: the one in the middle, plain or
    unique as ``taker`` says, draws the restored id 2."""
    middle = Plain.new({"n": 1}) if taker == "plain" else Once.new({"k": 2})
    return [Once.new({"k": 1}), middle, Plain.new({"n": 2})]


def _last_id(db: psycopg.Connection, schema: str) -> int | None:
    """The last id the jobs' identity handed out (None: none yet)."""
    return db.execute(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass)",
        (f"{schema}.pgqueue_jobs",),
    ).fetchone()[0]


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("taker", ["plain", "unique"], ids=["plain-takes-it", "unique-takes-it"])
def test_a_taken_id_in_a_unique_batch_raises_and_inserts_nothing(
    client: pgqueue.Client, db, schema: str, api: str, taker: str
) -> None:
    # ON CONFLICT without an arbiter also swallowed the primary key's clash: the job
    # that drew the taken id was dropped (or retried under another), the batch's other
    # rows committed, and the rows were matched to the wrong specs or the enqueue failed
    # with an error that said nothing of why. The primary key is no arbiter now. A
    # unique job's row can meet the arbiter, a plain one's never: either must raise
    # when it is the one that draws the taken id.
    specs = _batch(taker)
    _take_id(db, 2)
    before = _rows(db)
    assert _last_id(db, schema) is None  # the batch draws from 1
    with pytest.raises(psycopg.errors.UniqueViolation) as info:
        if api == "sync":
            client.enqueue_many(specs)
        else:

            async def main() -> None:
                try:
                    await client.enqueue_many_async(specs)
                finally:
                    await client.aclose()

            asyncio.run(main())
    assert info.value.diag.constraint_name == "pgqueue_jobs_pkey"
    assert any("setval" in note for note in info.value.__notes__)
    assert _rows(db) == before  # all or nothing
    # Once the identity is moved past the table's ids (as the note says), it goes in.
    db.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence({}, 'id'), max(id)) FROM pgqueue_jobs"
        ).format(sql.Literal(f"{schema}.pgqueue_jobs"))
    )
    jobs = client.enqueue_many(specs)
    assert [j.id for j in jobs] == [3, 4, 5]  # in input order: the middle job drew 2 above
    stored = {r[0]: (r[1], r[2]) for r in _rows(db)}
    assert [stored[j.id] for j in jobs] == [(s.worker, s.args) for s in specs]
    assert len(stored) == len(before) + len(specs)


def test_a_taken_id_on_the_callers_connection_raises_there(
    client: pgqueue.Client, db, dsn: str
) -> None:
    _take_id(db, 2)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            client.enqueue_many(_batch(), conn=conn)
        conn.rollback()
    assert len(_rows(db)) == 1


@pytest.mark.parametrize("path", ["single", "batch", "copy", "streamed"])
def test_every_insert_path_says_how_to_mend_a_taken_id(
    client: pgqueue.Client, db, path: str
) -> None:
    # The statement paths without ON CONFLICT always raised on a taken id; they now
    # also say why it happens and what to run.
    _take_id(db, 1)
    with pytest.raises(psycopg.errors.UniqueViolation) as info:
        if path == "single":
            Plain.enqueue({"n": 0}, client=client)
        elif path == "batch":
            client.enqueue_many([Plain.new({"n": i}) for i in range(3)])
        elif path == "copy":
            client.enqueue_many([Plain.new({"n": i}) for i in range(COPY_FROM)])
        else:
            Plain.enqueue_many([{"n": i} for i in range(COPY_FROM)], client=client)
    assert info.value.diag.constraint_name == "pgqueue_jobs_pkey"
    assert [n for n in info.value.__notes__ if "setval" in n] == info.value.__notes__
    assert len(info.value.__notes__) == 1 and len(_rows(db)) == 1


def _blocked_on_locks(db: psycopg.Connection) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()[0]


def test_batches_of_the_same_keys_in_different_orders_do_not_deadlock(
    client: pgqueue.Client, db, dsn: str
) -> None:
    # Two batches inserting K1, K3, K2 and K2, K3, K1 both wait on K3, held by an open
    # transaction. When it rolls back, one batch takes K3 and would go on to wait for a
    # key the other took first while that one waits for K3: a deadlock, unless every
    # batch inserts its unique jobs in the same (key) order.
    specs = {k: Once.new({"k": k}) for k in (1, 2, 3)}
    outcomes: dict[str, list[pgqueue.Job] | BaseException] = {}

    def enqueue(name: str, order: list[int]) -> None:
        try:
            outcomes[name] = client.enqueue_many([specs[k] for k in order])
        except BaseException as exc:  # reported by the assertions below
            outcomes[name] = exc

    with psycopg.connect(dsn) as holder:
        held = client.enqueue_many([specs[3]], conn=holder)[0]
        threads = [
            threading.Thread(target=enqueue, args=("t1", [1, 3, 2])),
            threading.Thread(target=enqueue, args=("t2", [2, 3, 1])),
        ]
        for t in threads:
            t.start()
        wait_for(lambda: _blocked_on_locks(db) == 2, what="both batches waiting on a lock")
        holder.rollback()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert not any(isinstance(o, BaseException) for o in outcomes.values()), outcomes
    rows = db.execute("SELECT id, (args->>'k')::int FROM pgqueue_jobs ORDER BY 2").fetchall()
    assert [k for _, k in rows] == [1, 2, 3] and held.id not in {i for i, _ in rows}
    ids = {k: i for i, k in rows}
    for name, order in (("t1", [1, 3, 2]), ("t2", [2, 3, 1])):
        jobs = outcomes[name]
        assert [(j.args["k"], j.id) for j in jobs] == [(k, ids[k]) for k in order]
    # Each key was inserted by exactly one of the two.
    inserted = [(j.args["k"], name) for name in outcomes for j in outcomes[name] if not j.conflict]
    assert sorted(k for k, _ in inserted) == [1, 2, 3]


def _claim_order(client: pgqueue.Client, count: int) -> list[int]:
    """The ids of the next ``count`` jobs of the queue, one claim each (the node's own)."""

    async def main() -> list[int]:
        engine = Engine(await client.apool(), client.schema)
        order = []
        for _ in range(count):
            (job,) = await engine.fetch_jobs("conflicts", 1, "claimer")
            order.append(job.id)
        return order

    return asyncio.run(main())


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_batch_of_plain_and_unique_jobs_is_claimed_in_the_order_given(
    client: pgqueue.Client, db, api: str
) -> None:
    # Jobs of one batch share scheduled_at, so the claim (priority, scheduled_at, id)
    # runs them in id order. A batch's unique rows are inserted in key order (against
    # deadlocks); drawing their ids as inserted, they ran after the batch's plain jobs,
    # in hash order. Here the keys sort against the order given, and one key comes
    # twice: its second job draws an id it never uses, a gap, not a reordering.
    unique = sorted(
        (Once.new({"k": k}) for k in range(3)),
        key=lambda s: insert_params(client.queries, [s])[1][0],
        reverse=True,
    )
    specs = [unique[0], Plain.new({"n": 0}), unique[1], Plain.new({"n": 1}), unique[0], unique[2]]
    if api == "sync":
        jobs = client.enqueue_many(specs)
    else:
        jobs = asyncio.run(client.enqueue_many_async(specs))
    assert [j.conflict for j in jobs] == [False, False, False, False, True, False]
    assert jobs[4].id == jobs[0].id
    made = [j.id for j in jobs if not j.conflict]
    assert made == [1, 2, 3, 4, 6], "ids not drawn in the order given"
    stored = dict(db.execute("SELECT id, args FROM pgqueue_jobs").fetchall())
    given = [s.args for s, j in zip(specs, jobs, strict=True) if not j.conflict]
    assert [stored[i] for i in made] == given
    assert _claim_order(client, len(made)) == made


def _insert_with_keys(db, schema: str, keys: list[str]) -> list[tuple]:
    """insert_jobs of one Once job per key, with the digests replaced by ``keys``:
    (conflict, id, key) per row returned."""
    q = queries(schema)
    params, _ = insert_params(q, [Once.new({"k": i}) for i in range(len(keys))])
    rows = json.loads(params["rows"])
    for row, key in zip(rows, keys, strict=True):
        row[9] = key
    params["rows"] = json.dumps(rows)
    return [(r[0], r[1], r[5]) for r in db.execute(q.insert_jobs, params).fetchall()]


def test_keys_at_the_edges_of_the_pieces_insert_and_conflict(db, schema: str) -> None:
    # The constraint compares the key's first two 60-bit pieces as one-point ranges of
    # bigint (migrations/0007). A piece of all ones, or a 64-bit piece with its sign bit
    # set or with every bit set, must neither overflow the range's [x, x + 1) nor wrap
    # onto another key; keys that differ in one piece alone are different jobs.
    keys = [
        "f" * 64,
        "0" * 64,
        "7" + "f" * 63,
        "8" + "0" * 63,
        "1" * 15 + "2" * 15 + "0" * 34,
        "1" * 15 + "3" * 15 + "0" * 34,
        "4" * 15 + "2" * 15 + "0" * 34,
    ]
    first = _insert_with_keys(db, schema, keys)
    assert [conflict for conflict, _, _ in first] == [False] * len(keys)
    ids = {key: job_id for _, job_id, key in first}
    again = _insert_with_keys(db, schema, keys)
    assert all(conflict for conflict, _, _ in again)
    assert {key: job_id for _, job_id, key in again} == ids


def test_the_longest_period_fits_the_window(client: pgqueue.Client, db) -> None:
    # The database adds the period, in milliseconds, to the enqueue's time in a bigint.
    longest = pgqueue.Unique(period=MAX_PERIOD)
    first = Once.enqueue({"k": "long"}, client=client, unique=longest)
    again = Once.enqueue({"k": "long"}, client=client, unique=longest)
    assert not first.conflict and again.conflict and again.id == first.id
