"""``_ops.queue_overview``: exact counts of small states, sampled estimates of huge ones,
and the oldest-available probe across priorities. The sizes are scaled down: a tiny
``exact_below`` makes a small, analyzed table take the estimating path."""

from __future__ import annotations

from psycopg import sql

from pgqueue import _ops


def _fill(db, schema: str) -> None:
    db.execute(
        sql.SQL(
            """
            INSERT INTO {}.pgqueue_jobs (state, queue, worker, priority, scheduled_at)
            SELECT s.state::{}.pgqueue_state, s.queue, 'w', s.priority,
                   now() - make_interval(secs => s.age)
            FROM (VALUES ('completed', 'a', 300, 0, 0), ('completed', 'b', 100, 0, 0),
                         ('discarded', 'a', 20, 0, 0), ('available', 'a', 3, 0, 5),
                         ('available', 'b', 1, 9, 120), ('available', 'b', 2, 0, 30))
                 AS s(state, queue, n, priority, age),
                 generate_series(1, s.n)
            """
        ).format(sql.Identifier(schema), sql.Identifier(schema))
    )
    db.execute(sql.SQL("ANALYZE {}.pgqueue_jobs").format(sql.Identifier(schema)))


def test_small_table_is_counted_exactly(db, schema) -> None:
    _fill(db, schema)
    overview = _ops.queue_overview(db, schema)
    assert overview.estimated == ()
    assert overview.counts["a"]["completed"] == 300 and overview.counts["b"]["completed"] == 100
    assert overview.counts["a"]["discarded"] == 20 and overview.counts["b"]["available"] == 3
    # The oldest available job of b has priority 9: every priority is probed.
    assert 119 <= overview.oldest_available["b"] < 200
    assert 4 <= overview.oldest_available["a"] < 60


def test_huge_final_states_are_estimated_and_small_ones_still_counted(db, schema) -> None:
    _fill(db, schema)
    assert _ops.table_estimate(db, schema) == 426
    overview = _ops.queue_overview(db, schema, exact_below=50)
    # completed (400 rows) is "huge" at this scale; discarded (20) is still counted.
    assert overview.estimated == ("completed",)
    assert overview.counts["a"]["discarded"] == 20
    # A table this small is sampled whole, so the estimate is exact here.
    assert overview.counts["a"]["completed"] == 300 and overview.counts["b"]["completed"] == 100
    assert overview.counts["a"]["available"] == 3
    exact = _ops.queue_overview(db, schema, exact_below=50, exact=True)
    assert exact.estimated == () and exact.counts == overview.counts


def test_never_analyzed_table_is_counted_exactly(db, schema) -> None:
    overview = _ops.queue_overview(db, schema, exact_below=0)
    assert overview.counts == {} and overview.estimated == ()
