"""``pgqueue inspect`` on a table of 1,000,000 jobs (slow tier: ``make test-slow``).

Fills the module's schema with a realistic mix (90 % completed, a backlog, a dead letter,
five queues, ten priorities), then times the commands an operator runs and checks what
they print. Timings are printed, not asserted: the machine is shared.
"""

from __future__ import annotations

import json
import time

import pytest
from psycopg import sql

from pgqueue import _ops
from tests.ops.support import run

pytestmark = pytest.mark.slow

ROWS = 1_000_000
FILL = """
INSERT INTO {schema}.pgqueue_jobs
    (state, queue, worker, args, tags, priority, attempt, scheduled_at, attempted_at,
     completed_at, discarded_at, cancelled_at)
SELECT st::{schema}.pgqueue_state,
       (ARRAY['default', 'media', 'mail', 'reports', 'billing'])[1 + i %% 5],
       (ARRAY['app.jobs.Resize', 'app.jobs.send', 'app.jobs.Charge'])[1 + i %% 3],
       jsonb_build_object('n', i), ARRAY['t' || i %% 10], i %% 10, 1,
       now() - make_interval(secs => (%(rows)s - i) / 10.0), now(),
       CASE WHEN st = 'completed' THEN now() END,
       CASE WHEN st = 'discarded' THEN now() END,
       CASE WHEN st = 'cancelled' THEN now() END
FROM (
    SELECT i, CASE WHEN r < 0.90 THEN 'completed' WHEN r < 0.95 THEN 'available'
                   WHEN r < 0.97 THEN 'scheduled' WHEN r < 0.98 THEN 'retryable'
                   WHEN r < 0.995 THEN 'discarded' ELSE 'cancelled' END AS st
    FROM (SELECT i, random() AS r FROM generate_series(1, %(rows)s) AS i) AS g
) AS s
"""


def _timed(*args: str, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = run(*args, env=env).stdout
    return time.perf_counter() - started, out


def test_inspect_one_million_jobs(db, schema, env, capsys) -> None:
    t = sql.Identifier(schema)
    db.execute(sql.SQL(FILL).format(schema=t), {"rows": ROWS})
    db.execute(sql.SQL("VACUUM ANALYZE {}.pgqueue_jobs").format(t))
    truth = dict(
        db.execute(
            sql.SQL("SELECT state::text, count(*) FROM {}.pgqueue_jobs GROUP BY 1").format(t)
        ).fetchall()
    )
    run("inspect", env=env)  # warm the cache the way a second look at 3 a.m. would

    timings: dict[str, float] = {}
    timings["inspect"], human = _timed("inspect", env=env)
    timings["inspect --json"], out = _timed("inspect", "--json", env=env)
    timings["inspect --exact"], _ = _timed("inspect", "--exact", env=env)
    timings["inspect --state discarded"], listed = _timed(
        "inspect", "--state", "discarded", env=env
    )
    timings["inspect --queue mail --tag t3"], _ = _timed(
        "inspect", "--queue", "mail", "--tag", "t3", env=env
    )
    timings["--version (interpreter start-up)"], _ = _timed("--version", env=env)

    data = json.loads(out)
    totals = {s: sum(q[s] for q in data["queues"].values()) for s in truth}
    assert totals == truth and data["estimated"] == []
    assert len(human.splitlines()) == 6 and len(listed.splitlines()) == 1 + 50 + 2

    # The estimating path (what the Prometheus gauges use above 250,000 rows a state).
    in_process: dict[str, float] = {}
    for label, kwargs in (("exact", {"exact": True}), ("estimate", {"exact_below": 250_000})):
        best = min(_ops.queue_overview(db, schema, **kwargs).seconds for _ in range(3))
        in_process[label] = best
    estimate = _ops.queue_overview(db, schema, exact_below=250_000)
    assert estimate.estimated == ("completed",)
    completed = sum(q["completed"] for q in estimate.counts.values())
    assert abs(completed - truth["completed"]) / truth["completed"] < 0.05
    assert sum(q["discarded"] for q in estimate.counts.values()) == truth["discarded"]

    with capsys.disabled():
        print(f"\n\n{ROWS:,} jobs ({truth}):")
        for label, seconds in timings.items():
            print(f"  pgqueue {label:<40} {seconds * 1000:7.0f} ms (whole process)")
        for label, seconds in in_process.items():
            print(f"  queue_overview {label:<31} {seconds * 1000:7.0f} ms (query only)")
