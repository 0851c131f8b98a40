"""The bench's client_cost tool against a real server: every layer really enqueues."""

import psycopg

from tests.bench import client_cost


def test_every_layer_inserts_what_it_claims_to(dsn):
    figures = client_cost.measure(dsn, n=3, rounds=2)
    assert len(figures) == len(client_cost.LAYERS)
    assert all(cpu > 0 and wall > 0 for cpu, wall in figures)
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE args = '{{\"i\": 1}}' AND state = 'available') "
            f"FROM {client_cost.SCHEMA}.pgqueue_jobs"
        ).fetchone()
        bare = conn.execute("SELECT count(*) FROM bench_ceiling.jobs").fetchone()
    # Five pgqueue layers, each warmed with 20 calls, then 2 rounds of 3; the ceiling one.
    assert jobs == (5 * (20 + 2 * 3), 5 * (20 + 2 * 3))
    assert bare == (20 + 2 * 3,)
