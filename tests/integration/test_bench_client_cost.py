"""The bench's client_cost tool against a real server: every layer makes its calls."""

import psycopg

from tests.bench import client_cost


def test_each_layer_makes_one_insert_per_call_and_every_round_is_timed(dsn):
    samples = client_cost.measure(dsn, n=3, rounds=2)
    assert len(samples) == len(client_cost.LAYERS)
    assert all(len(cpu) == len(wall) == 2 for cpu, wall in samples)
    assert all(x > 0 for cpu, wall in samples for x in cpu + wall)
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE args = '{\"i\": 1}' AND state = 'available') "
            f"FROM {client_cost.SCHEMA}.pgqueue_jobs"
        ).fetchone()
        bare = conn.execute("SELECT count(*) FROM bench_ceiling.jobs").fetchone()
    # Five pgqueue layers, each warmed with 20 calls, then 2 rounds of 3; the ceiling one.
    assert jobs == (5 * (20 + 2 * 3), 5 * (20 + 2 * 3))
    assert bare == (20 + 2 * 3,)
    assert "Worker.enqueue's wall time is" in client_cost.table(samples)


def test_alternating_times_only_the_insert_and_worker_enqueue(dsn):
    enqueue, insert, fraction = client_cost.alternating(dsn, n=3, rounds=2)
    assert enqueue > 0 and insert > 0 and fraction > 0
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute(f"SELECT count(*) FROM {client_cost.SCHEMA}.pgqueue_jobs").fetchone()
        bare = conn.execute("SELECT count(*) FROM bench_ceiling.jobs").fetchone()
    # Worker.enqueue alone of pgqueue's layers, and the ceiling's INSERT: 20 warm-up
    # calls each, then 2 rounds of 3.
    assert jobs == (20 + 2 * 3,)
    assert bare == (20 + 2 * 3,)
