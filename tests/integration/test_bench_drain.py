"""The bench's W2 clock against a real server: System.wait_drained polls the system's
own table from its own connection (the clock itself is tested to the millisecond on
simulated drains in tests/unit/test_bench_drain.py)."""

import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
from psycopg import sql

from tests.bench.drain import FINE
from tests.bench.systems import System


def test_the_drain_clock_stops_on_peers_poll_and_the_exact_one_at_the_last_job(
    dsn, schema, tmp_path
):
    table = sql.Identifier(schema, "drain_clock")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(
            sql.SQL("CREATE TABLE {} AS SELECT generate_series(1, 1000) AS id").format(table)
        )
    count = sql.SQL("SELECT count(*) FROM {}").format(table).as_string(None)
    adapter = SimpleNamespace(UNFINISHED_SQL=count)
    system = System("fake", adapter, "python", dsn, Path(tmp_path))  # type: ignore[arg-type]
    done_at: list[float] = []

    def drain() -> None:
        # 900 jobs finish over the first 0.45 s, the last 100 at 0.53 s: off the 0.2 s
        # grid, so PEERS.md's clock must read 0.6 s and the exact one about 0.53 s.
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(9):
                time.sleep(0.05)
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id <= %s").format(table), ((i + 1) * 100,)
                )
            time.sleep(max(0.0, t0 + 0.53 - time.monotonic()))
            done_at.append(time.monotonic())  # the last commit lies between the two
            conn.execute(sql.SQL("DELETE FROM {}").format(table))
            done_at.append(time.monotonic())

    t0 = time.monotonic()
    worker = threading.Thread(target=drain)
    worker.start()
    try:
        end, exact = system.wait_drained(1000, t0, bound=5)
    finally:
        worker.join()
    # The second clock: after the last delete's commit (sent at done_at[0], its reply
    # read at done_at[1]), and not far after it. This drain
    # pauses and then ends at once, which no rate foresees: the extra polls wait half the
    # time the last 100 jobs take at the rate before the pause (~25 ms), so the bound is
    # wide; drain.wait's own tests hold it to the millisecond on simulated drains.
    assert done_at[0] <= exact <= done_at[1] + FINE + 0.05
    # Polls at 0, 0.2, 0.4, 0.6 s (each after the one before ends): the fourth sees none,
    # the first on the grid after the last delete's commit. Where the machine is too slow
    # for the drain to end at 0.53 s, the commit lies between the delete's send and its
    # reply, and a poll that starts late (after the one before it ended) may see it from
    # its own slot: never before 0.6 s or the send, never after the slot past the reply.
    last = 0.2 * math.ceil(round((done_at[1] - t0) / 0.2, 6))
    assert max(0.6, done_at[0] - t0) <= end - t0 < last + 0.1
