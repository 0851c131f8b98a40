"""``python -m tests.bench``: run the workloads, print the tables, write the JSON.

Runs are interleaved (run 1 of every system, then run 2, ...) so machine noise spreads
over everyone instead of punishing whoever ran while the machine was busy.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import ceiling, client_cost, report, steal, workloads
from .memory import memory_run
from .peers import ADAPTERS
from .systems import ROOT, BoundHit, System, base_database, database_dsn

FULL = {
    "w1_single": 5_000, "w1_bulk": 100_000, "w2": 30_000, "w2_backlog": 150_000, "w3": 300, "w3_interval": 0.02,
    "w4_background": 1_000_000, "w5_insert": 5_000, "w5_copy": 200_000, "w5_drain": 200_000,
    "w5_engine": 60_000, "memory": 1_000_000, "w1_single_alternating": 300, "w1_single_alternating_rounds": 10,
    "w1_unique": 5_000, "w1_unique_background": 25_000, "w1_unique_single": 500,
}  # fmt: skip
QUICK = {
    "w1_single": 500, "w1_bulk": 10_000, "w2": 3_000, "w2_backlog": 15_000, "w3": 50, "w3_interval": 0.02,
    "w4_background": 100_000, "w5_insert": 1_000, "w5_copy": 50_000, "w5_drain": 20_000,
    "w5_engine": 10_000, "memory": 50_000, "w1_single_alternating": 100, "w1_single_alternating_rounds": 4,
    "w1_unique": 1_000, "w1_unique_background": 5_000, "w1_unique_single": 100,
}  # fmt: skip
SOURCES = ("pgqueue", "cli", "tests/bench")  # compile_sources' folders, under ROOT
ENGINE_LOOPS = ((1, 10), (2, 50))  # (lanes, batch) of W5's engine loops
W4, W4_OF = "w4_async_c10_p1", "w2_async_c10_p1"  # W4's figure, and the W2 it is a ratio of
# W3's figures: enqueue -> start, then its two parts (the enqueue call, its return -> start).
W3_FIGURES = ("p50", "p95", "p99", "enqueue_p50", "enqueue_p99", "wake_p50", "wake_p99")
# Figures measured beside a bench figure: {(system or "ceiling", figure key): value}.
Figures = dict[tuple[str, str], float]
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "MEMORY")
PEER_VENVS = {".venv-peers": "python3.11", ".venv-oban": "python3.12"}
PY312 = "/root/.pyenv/versions/3.12.1/bin/python3.12"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 run, small sizes (a smoke test)")
    p.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; --quick 1)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="W2",
        help="workloads to run (W1..W5, memory; repeat or comma-separate); default W1-W5",
    )
    p.add_argument("--peers", action="store_true", help="also run the installed peers")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME",
        help=f"only these peers ({', '.join(ADAPTERS[1:])}); implies --peers",
    )
    p.add_argument(
        "--peer-runs",
        type=int,
        default=None,
        metavar="N",
        help="run the peers in the first N runs only (default: every run)",
    )
    p.add_argument("--no-pgqueue", action="store_true", help="measure the peers only")
    p.add_argument("--memory", action="store_true", help="also the (long) 1,000,000-job memory run")
    p.add_argument("--dsn", default=None, help="server to use (default $DATABASE_URL)")
    p.add_argument("--out", default=str(ROOT / "bench-results"), help="folder for the JSON")
    p.add_argument(
        "--install-peers",
        action="store_true",
        help="create .venv-peers (3.11) and .venv-oban (3.12) from requirements-peers.txt, then exit",
    )
    args = p.parse_args(argv)  # fmt: skip
    args.only = {w.strip().upper() for o in args.only for w in o.split(",") if w.strip()}
    if bad := args.only - set(WORKLOADS):
        p.error(f"--only takes {', '.join(WORKLOADS)}; got {', '.join(sorted(bad))}")
    args.only = args.only or set(WORKLOADS) - {"MEMORY"}
    if args.memory:
        args.only.add("MEMORY")
    if bad := set(args.peer) - set(ADAPTERS[1:]):
        p.error(f"--peer takes {', '.join(ADAPTERS[1:])}; got {', '.join(sorted(bad))}")
    args.peers = args.peers or bool(args.peer)
    args.runs = args.runs or (1 if args.quick else 3)
    return args


def install_peers() -> int:
    reqs = str(Path(__file__).with_name("requirements-peers.txt"))
    for venv, python in PEER_VENVS.items():
        if python == "python3.12" and os.path.exists(PY312):
            python = PY312
        print(f"== {venv} ({python})", flush=True)
        path = ROOT / venv
        if not (path / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(path)], check=True)
        subprocess.run(
            [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "-r", reqs], check=True
        )
    return 0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, server: str, log_dir: Path) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.server = server
        self.log_dir = log_dir
        self.results: dict[str, dict[str, list[float]]] = {}
        self.ceiling: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.memory: dict[str, Any] | None = None
        # Whether the last measurement hit its bound (its figure is a lower bound).
        self.last_was_bound = False
        # Share of CPU the hypervisor took during each measurement, by system and figure.
        self.steal: dict[str, dict[str, list[float | None]]] = {}

    def measure(self, system: str, key: str, fn: Any, *a: Any, **kw: Any) -> Any:
        label = report.figure_label(key)
        before = steal.snapshot()
        self.last_was_bound = False
        try:
            value = fn(*a, **kw)
        except BoundHit as exc:  # too slow to finish: keep the rate it reached, flagged
            value = exc.done / exc.seconds
            self.last_was_bound = True
            self.errors.append(f"{system} {key}: {exc}; recorded {value:,.0f}/s (a lower bound)")
            say(f"   ! {exc}")
        except Exception as exc:  # a peer failing must not stop the others
            msg = f"{system} {key}: {type(exc).__name__}: {exc}"
            self.errors.append(msg)
            say(f"   ! {msg}")
            return None
        stolen = steal.share(before, steal.snapshot())
        self.steal.setdefault(system, {}).setdefault(key, []).append(stolen)
        note = f"   (CPU stolen {stolen:.0%})" if stolen is not None and stolen >= 0.02 else ""
        if isinstance(value, dict):  # W3
            for p in W3_FIGURES:
                if p in value:
                    self._record(system, f"w3_{p}", value[p])
            say(
                f"   {system:13} {'W3 p50/p95/p99':45} {value['p50']:.2f} / {value['p95']:.2f} / {value['p99']:.2f} ms{note}"
            )
            if "enqueue_p99" in value and "wake_p99" in value:
                say(
                    f"   {system:13} {'W3 p99 of the enqueue call / return->start':45} "
                    f"{value['enqueue_p99']:.2f} / {value['wake_p99']:.2f} ms"
                )
        else:
            self._record(system, key, value)
            say(f"   {system:13} {label:45} {value:,.0f}{note}")
        return value

    def _record(self, system: str, key: str, value: float) -> None:
        target = self.ceiling if system == "ceiling" else self.results.setdefault(system, {})
        target.setdefault(key, []).append(value)

    def measure_with(
        self, system: str, key: str, fn: Callable[[], tuple[float, Figures]]
    ) -> float | None:
        """``measure`` of ``fn``'s first value, returned (None if it failed); the figures
        it measured alongside (``{(system, key): value}``) are recorded once that
        measurement succeeded."""
        beside: Figures = {}

        def run() -> float:
            value, more = fn()
            beside.update(more)
            return value

        value = self.measure(system, key, run)
        if value is not None:
            for (where, name), more in beside.items():
                self._record(where, name, more)
        return value

    def measure_w2(self, system: System, key: str, n: int, **kw: Any) -> float | None:
        """A W2 measurement by PEERS.md's clock, and beside it (``<key>_exact``) the rate
        by the clock stopped at the last completion (``drain.wait``)."""

        def run() -> tuple[float, Figures]:
            rate, exact = workloads.w2_process(system, n, **kw)
            return rate, {(system.name, f"{key}_exact"): exact}

        return self.measure_with(system.name, key, run)

    def measure_alternating(self, dsn: str) -> None:
        """W1 single (sync API) and an INSERT in alternating rounds
        (``client_cost.alternating``, in pgqueue's database ``dsn``): pgqueue's rate and
        its fraction of the INSERT's, and the INSERT's rate beside the ceiling's."""

        def run() -> tuple[float, Figures]:
            s = self.sizes
            enqueue, insert, fraction = client_cost.alternating(
                dsn, s["w1_single_alternating"], s["w1_single_alternating_rounds"]
            )
            return enqueue, {
                ("ceiling", "insert_alternating"): insert,
                ("pgqueue", "w1_single_sync_alternating_fraction"): fraction,
            }

        self.measure_with("pgqueue", "w1_single_sync_alternating", run)

    def measure_unique(self, system: System) -> None:
        """W1 unique (pgqueue only): a batch of new unique jobs beside many live ones, the
        same batch again as duplicates, and single duplicate enqueues."""
        s = self.sizes

        def run() -> tuple[float, Figures]:
            fresh, dup, single = workloads.w1_unique(
                system, s["w1_unique"], s["w1_unique_background"], s["w1_unique_single"]
            )
            return fresh, {
                (system.name, "w1_unique_dup_bulk"): dup,
                (system.name, "w1_unique_dup_single"): single,
            }

        self.measure_with(system.name, "w1_unique_bulk", run)

    def systems(self) -> list[System]:
        names = [] if self.args.no_pgqueue else ["pgqueue"]
        if self.args.peers:
            names += self.args.peer or list(ADAPTERS[1:])
        loaded = []
        for name in names:
            try:
                loaded.append(System.load(name, self.server, self.log_dir))
            except Exception as exc:
                self.errors.append(f"{name}: not run: {exc}")
                say(f"   ! {name}: not run: {exc}")
        return loaded

    def run(self) -> None:
        s, only = self.sizes, self.args.only
        systems = self.systems()
        w5_dsn = database_dsn(self.server, "pgqueue_bench") if "W5" in only else ""
        pg = next((x for x in systems if x.name == "pgqueue"), None)
        for r in range(1, self.args.runs + 1):
            say(f"== run {r}/{self.args.runs}")
            if "W5" in only:
                ceiling.prepare(w5_dsn)
                self.measure("ceiling", "insert", ceiling.single_inserts, w5_dsn, s["w5_insert"])
                self.measure(
                    "ceiling", "insert_async", ceiling.single_inserts_async, w5_dsn, s["w5_insert"]
                )
                self.measure("ceiling", "copy", ceiling.copy_rows, w5_dsn, s["w5_copy"])
                for b in (10, 50, 100):
                    self.measure(
                        "ceiling", f"claim_ack_b{b}", ceiling.claim_ack, w5_dsn, s["w5_drain"], b
                    )
                # pgqueue's own claims in the same loop, shaped as W2's producers claim
                # (one lane of 10; two lanes of 50 at concurrency 100), no job run.
                if pg is not None:
                    for lanes, b in ENGINE_LOOPS:
                        self.measure(pg.name, f"w5_engine_l{lanes}_b{b}", workloads.w5_engine,
                                     pg, s["w5_engine"], lanes, b)  # fmt: skip
            for system in systems:
                peer_runs = self.args.peer_runs or self.args.runs
                if system.name == "pgqueue" or r <= peer_runs:
                    self.run_system(system)
        if "MEMORY" in only and pg is not None:
            say(f"== memory run: {s['memory']:,} jobs")
            try:
                self.memory = memory_run(pg, s["memory"], progress=say)
                m = self.memory
                say(f"   RSS first {m['rss_first_mib']:.1f} MiB, last {m['rss_last_mib']:.1f}, "
                    f"max {m['rss_max_mib']:.1f}, growth {100 * m['growth']:+.1f} %")  # fmt: skip
            except Exception as exc:
                self.errors.append(f"memory run: {exc}")

    def run_system(self, system: System) -> None:
        s, only, name = self.sizes, self.args.only, system.name
        w4 = "W4" in only and hasattr(system.adapter, "BACKGROUND_SQL")
        if w4 and "W2" not in only:
            self.run_w4(system, None)
        if "W1" in only:
            self.measure(name, "w1_single", workloads.w1_single, system, s["w1_single"])
            if hasattr(system.adapter, "insert_single_sync"):
                self.measure(
                    name, "w1_single_sync", workloads.w1_single, system, s["w1_single"], "sync"
                )
            if name == "pgqueue":
                self.measure_alternating(system.dsn)
                self.measure_unique(system)
            self.measure(name, "w1_bulk", workloads.w1_bulk, system, s["w1_bulk"])
            if hasattr(system.adapter, "insert_bulk_specs"):
                self.measure(
                    name, "w1_bulk_specs", workloads.w1_bulk, system, s["w1_bulk"], "specs"
                )
        if "W2" in only:
            kinds = system.kinds if name == "pgqueue" else ("async",)
            configs = [(k, c, p) for k in kinds for c, p in ((10, 1), (100, 1), (10, 2))]
            configs += getattr(system.adapter, "EXTRA_W2", [])
            for kind, c, p in configs:
                key = f"w2_{kind}_c{c}_p{p}"
                value = self.measure_w2(system, key, s["w2"], concurrency=c, processes=p, kind=kind)
                if key == W4_OF and w4:
                    # W4 beside the W2 it is a ratio of (a W2 that hit its bound gives none)
                    self.run_w4(system, None if self.last_was_bound else value)
            self.measure_w2(system, "w2_async_c10_p1_analyze", s["w2"], concurrency=10,
                            analyze=True)  # fmt: skip
            if name == "pgqueue":  # peers: a 150,000-job drain takes procrastinate hours
                self.measure_w2(system, "w2_async_c10_p1_backlog", s["w2_backlog"],
                                concurrency=10)  # fmt: skip
            self.measure(name, "w2_startup_c100", workloads.w2_startup, system)
        if "W3" in only:
            self.measure(name, "w3", workloads.w3_latency, system, s["w3"], s["w3_interval"])

    def run_w4(self, system: System, w2: float | None) -> None:
        """One W4 measurement on a background built for it, right after this run's W2
        1 x 10 (``w2``, None if it failed or hit its bound), and the two's ratio
        (``w4_fraction``).

        W4 used to run three times at the very end, on one background: up to half an
        hour after the W2 it is a ratio of, on a machine whose speed drifts by a quarter
        in that time (W2 1 x 10 read 11,233, 10,402 and 8,557 in the three runs of one
        bench, W4 8,109, 8,004 and 9,754 after them: 0.78 by the medians). The
        background costs 10-30 s a run, untimed.
        """
        rows = self.sizes["w4_background"]
        say(f"== W4 {system.name}: inserting {rows:,} completed + {rows:,} scheduled rows")
        try:
            top = workloads.w4_background(system, rows)
        except Exception as exc:
            self.errors.append(f"{system.name} W4 background: {exc}")
            self._reset(system)  # a background built halfway
            return
        w4 = self.measure_w2(system, W4, self.sizes["w2"], concurrency=10, keep_after_id=top)
        bound = self.last_was_bound
        self._reset(system)  # leave no 2 M-row table behind
        if w2 and w4 and not bound:
            self._record(system.name, "w4_fraction", w4 / w2)

    def _reset(self, system: System) -> None:
        """Clear ``system``'s table; a failure is the bench's error, not its end (the
        next measurement resets first anyway)."""
        try:
            system.reset()
        except Exception as exc:
            self.errors.append(f"{system.name} reset: {type(exc).__name__}: {exc}")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }


def compile_sources() -> None:
    """Compile pgqueue's modules (and the bench's) to bytecode, as pip does when it
    installs a package.

    The peers' venvs hold compiled modules; pgqueue is installed editable and imported
    from its source, and where PYTHONDONTWRITEBYTECODE is set (it is on the bench
    machine) Python never keeps what it compiled: every worker process W2 starts
    compiled pgqueue again, about 40 ms of the start-up W2 counts. A module that does not
    compile stops the bench here (compileall has printed why), not in a worker later.
    """
    for folder in SOURCES:
        if not compileall.compile_dir(ROOT / folder, quiet=1):
            raise SystemExit(f"bench: {ROOT / folder} does not compile (see above)")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.install_peers:
        return install_peers()
    server = args.dsn or os.environ.get("DATABASE_URL")
    if not server:
        say("no server: set DATABASE_URL, pass --dsn, or run `make bench` (embedded PostgreSQL)")
        return 2
    compile_sources()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    bench = Bench(args, server, out / f"{stamp}-logs")
    started = time.time()
    bench.run()
    report.add_steady(bench.results, bench.sizes["w2"])
    systems = [x for x in ["pgqueue", *ADAPTERS[1:]] if x in bench.results]
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    tgts = report.targets(bench.results, bench.ceiling, bench.memory)
    print()
    print(f"pgqueue bench {stamp}: {args.runs} run(s){' (quick sizes)' if args.quick else ''}, "
          f"PostgreSQL {pg_version} on {base_database(server)}'s server, {os.cpu_count()} CPUs; "
          "median [min-max]")  # fmt: skip
    if systems:
        print()
        print(report.figures_table(bench.results, systems))
    if bench.ceiling:
        print()
        print(report.ceiling_table(bench.ceiling))
        print()
        print(report.ceiling_ratios(bench.results, bench.ceiling, systems))
    if like := report.like_for_like(bench.results, bench.ceiling):
        print()
        print(like)
    if len(systems) > 1 and "pgqueue" in systems:
        print()
        print(report.peers_ratio_table(bench.results, systems))
    if "pgqueue" in systems:
        print()
        print(report.targets_table(tgts))
    if bench.memory:
        m = bench.memory
        print()
        print(f"memory run: {m['jobs']:,} jobs in {m['seconds']:.0f} s ({m['jobs_per_s']:,.0f}/s); worker RSS "
              f"first {m['rss_first_mib']:.1f} MiB, last {m['rss_last_mib']:.1f}, max {m['rss_max_mib']:.1f} "
              f"({100 * m['growth']:+.1f} %)")  # fmt: skip
    if line := report.steal_line(bench.steal):
        print()
        print(line)
    if bench.errors:
        print()
        print("errors:")
        for e in bench.errors:
            print(f"  - {e}")
    path = out / f"{stamp}.json"
    report.write_json(path, {
        "started": started, "seconds": time.time() - started, "machine": machine(),
        "postgres": pg_version, "options": {k: v if not isinstance(v, set) else sorted(v) for k, v in vars(args).items() if k != "dsn"},
        "sizes": bench.sizes, "results": bench.results, "ceiling": bench.ceiling,
        "targets": tgts, "memory": bench.memory, "errors": bench.errors, "steal": bench.steal,
    })  # fmt: skip
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0
