"""The bench's W2 clock against a real server: PEERS.md's 0.2 s poll, and beside it the
end read within a few milliseconds of the last completion."""

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg

from tests.bench.systems import FINE, System


def test_the_drain_clock_stops_on_peers_poll_and_the_exact_one_at_the_last_job(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS drain_clock")
        conn.execute("CREATE TABLE drain_clock AS SELECT generate_series(1, 1000) AS id")
    adapter = SimpleNamespace(UNFINISHED_SQL="SELECT count(*) FROM drain_clock")
    system = System("fake", adapter, "python", dsn, Path(tmp_path))  # type: ignore[arg-type]
    done_at: list[float] = []

    def drain() -> None:
        # 900 jobs finish over the first 0.45 s, the last 100 at 0.53 s: off the 0.2 s
        # grid, so PEERS.md's clock must read 0.6 s and the exact one about 0.53 s.
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(9):
                time.sleep(0.05)
                conn.execute("DELETE FROM drain_clock WHERE id <= %s", ((i + 1) * 100,))
            time.sleep(t0 + 0.53 - time.monotonic())
            conn.execute("DELETE FROM drain_clock")
            done_at.append(time.monotonic())

    t0 = time.monotonic()
    worker = threading.Thread(target=drain)
    worker.start()
    end = system.wait_drained(1000, t0)
    worker.join()
    assert system.drain_end is not None
    assert done_at[0] - 0.002 <= system.drain_end <= done_at[0] + FINE + 0.05
    # Polls at 0, 0.2, 0.4, 0.6 s (each after the one before ends): the fourth sees none.
    assert 0.6 <= end - t0 < 0.7
