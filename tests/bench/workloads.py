"""W1-W4: one measurement each, against any ``System`` (PEERS.md has the definitions).

Each function clears the system's tables first and returns plain numbers; repeating
them and taking medians is the caller's business.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from .systems import BenchError, System


def w1_single(system: System, n: int, api: str = "async") -> float:
    """W1 single: ``n`` enqueue calls one after another; jobs/s."""
    system.reset()
    command = "insert_single" if api == "async" else "insert_single_sync"
    return n / system.call(command, n=n)["seconds"]


def w1_bulk(system: System, n: int, api: str = "batch") -> float:
    """W1 bulk: ``n`` jobs through the batch API, timed from a list of dicts; jobs/s.

    ``api="specs"``: pgqueue's other batch form, one spec built per job by the caller."""
    system.reset()
    command = "insert_bulk" if api == "batch" else "insert_bulk_specs"
    return n / system.call(command, n=n)["seconds"]


def w1_unique(system: System, n: int, background: int, single: int) -> tuple[float, float, float]:
    """W1 unique (pgqueue only): new unique jobs in a batch beside ``background`` live
    ones, the same batch again as duplicates, and single duplicate enqueues; jobs/s each."""
    system.reset()
    r = system.call("insert_unique", n=n, background=background, single=single)
    return n / r["seconds"], n / r["dup_seconds"], single / r["single_seconds"]


def w2_process(
    system: System,
    n: int,
    *,
    concurrency: int,
    processes: int = 1,
    kind: str = "async",
    analyze: bool = False,
    keep_after_id: int | None = None,
) -> tuple[float, float]:
    """W2: ``n`` jobs prefilled untimed, then workers spawned; jobs/s until none is left.

    The clock starts just before the worker processes are spawned (start-up counts) and
    stops when the bench's own connection, polling every 0.2 s, sees no unfinished job.
    ``analyze`` takes statistics of the full table first; ``keep_after_id`` (W4) deletes
    only the rows above it instead of clearing the table, then vacuums what that left
    dead: the table each W2 starts on is truncated, and a W4 after another would start
    on its 30,000 deleted rows and every version its drain wrote (read 0.70-0.79 of W2 in
    two runs, its second and third W4 below its first). Returns that rate and the one by
    the clock stopped at the last completion (``drain.wait``), in that order.
    """
    if keep_after_id is None:
        system.reset()
    else:
        table = system.adapter.TABLE
        system.reset(f"DELETE FROM {table} WHERE id > {int(keep_after_id)}", f"VACUUM {table}")
    system.call("prefill", n=n, kind=kind, timeout=600)
    if analyze:
        system.analyze()
    t0 = time.monotonic()
    system.spawn_workers(processes, concurrency, kind)
    try:
        end, exact = system.wait_drained(n, t0)
    finally:
        system.stop_workers()
    return n / (end - t0), n / (exact - t0)


def w2_startup(system: System, *, concurrency: int = 100, kind: str = "async") -> float:
    """W2's start-up: ms from spawning one worker process (W2's command) to the end of
    its first job, the only one queued. W2's clock counts it before the drain proper
    (interpreter, imports, connections); the ceiling's clock starts after it."""
    system.reset()
    system.call("prefill", n=1, kind=kind, timeout=600)
    return 1000 * system.time_first_job(concurrency, kind)


def w5_engine(system: System, n: int, lanes: int, batch: int) -> float:
    """W5 with pgqueue's engine: ``lanes`` claim loops of ``batch``, no job run; jobs/s."""
    system.reset()
    return n / system.call("claim_loop", n=n, batch=batch, lanes=lanes)["seconds"]


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def w3_latency(system: System, n: int, interval: float) -> dict[str, float]:
    """W3: idle worker, warm-up, then ``n`` enqueues ``interval`` s apart; p50/p95/p99 ms."""
    system.reset()
    with tempfile.TemporaryDirectory(prefix="pgqueue-bench-") as tmp:
        starts = str(Path(tmp) / "starts.txt")
        system.spawn_workers(1, 10, "record", env={"BENCH_STARTS": starts})
        try:
            result = system.call("latency", n=n, interval=interval, starts=starts)
        finally:
            system.stop_workers()
    if result.get("error"):
        raise BenchError(f"{system.name} W3: {result['error']}")
    lat = result["latencies_ms"]
    if len(lat) < 2:
        raise BenchError(f"{system.name} W3: only {len(lat)} of {n} jobs started")
    out = {
        "p50": percentile(lat, 50),
        "p95": percentile(lat, 95),
        "p99": percentile(lat, 99),
        "max": max(lat),
        "missing": result.get("missing", 0),
    }
    # The two parts of a latency (an adapter in an older venv may not send them).
    for part in ("enqueue", "wake"):
        if values := result.get(f"{part}_ms"):
            out[f"{part}_p50"] = percentile(values, 50)
            out[f"{part}_p99"] = percentile(values, 99)
    return out


def w4_background(system: System, rows: int) -> int:
    """W4's table: ``rows`` completed and ``rows`` future-scheduled jobs, inserted with SQL.

    Returns the highest id of the background, above which each W4 measurement works.
    """
    background = getattr(system.adapter, "BACKGROUND_SQL", None)
    if background is None:
        raise BenchError(f"{system.name}: no W4 background rows defined")
    system.reset()
    system.execute(*(q.format(rows=int(rows)) for q in background))
    system.execute(f"VACUUM ANALYZE {system.adapter.TABLE}")
    return int(system.scalar(f"SELECT max(id) FROM {system.adapter.TABLE}"))
