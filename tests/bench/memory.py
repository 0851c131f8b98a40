"""The memory run (``--memory``): one pgqueue worker through a million jobs, RSS sampled.

The backlog is inserted with SQL (fast, untimed). The worker's resident set is sampled
every ``interval`` seconds from /proc while it drains; "first" is the first sample
taken after ``settle`` seconds (imports, pools and thread pool warmed up), so the
growth figure measures the steady state the target is about.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .systems import BenchError, System


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_run(
    system: System, n: int, concurrency: int = 10, interval: float = 1.0, settle: float = 5.0,
    bound: float = 3600.0, progress: Any = None,
) -> dict[str, Any]:  # fmt: skip
    system.reset()
    chunk = 250_000
    for start in range(1, n + 1, chunk):
        system.execute(
            system.adapter.AVAILABLE_SQL.format(start=start, stop=min(n, start + chunk - 1))
        )
    system.analyze()
    t0 = time.monotonic()
    (proc,) = system.spawn_workers(1, concurrency, "async")
    samples: list[tuple[float, int, int]] = []  # (seconds, rss, jobs left)
    try:
        import psycopg

        with psycopg.connect(system.dsn, autocommit=True) as conn:
            while True:
                left = conn.execute(system.adapter.UNFINISHED_SQL).fetchone()[0]
                now = time.monotonic() - t0
                if proc.poll() is not None:
                    raise BenchError(
                        f"memory run: worker exited ({proc.returncode}) with {left} left"
                    )
                samples.append((round(now, 2), rss_bytes(proc.pid), left))
                if progress and len(samples) % 30 == 0:
                    progress(
                        f"memory run: {now:.0f} s, {left:,} left, RSS {samples[-1][1] / 2**20:.1f} MiB"
                    )
                if left == 0:
                    break
                if now > bound:
                    raise BenchError(f"memory run: {left} jobs left after {bound:g} s")
                time.sleep(interval)
    finally:
        system.stop_workers()
    elapsed = samples[-1][0]
    steady = [s for s in samples if s[0] >= settle] or samples
    first, last = steady[0][1], steady[-1][1]
    return {
        "jobs": n,
        "seconds": elapsed,
        "jobs_per_s": n / elapsed,
        "rss_first_mib": first / 2**20,
        "rss_last_mib": last / 2**20,
        "rss_max_mib": max(s[1] for s in steady) / 2**20,
        "growth": (last - first) / first,
        "samples": samples,
    }
