"""The bench's own tools: the record of CPU stolen by the hypervisor (steal.py) and the
statements server_cost.py counts."""

import argparse
import asyncio
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from pgqueue._engine import channel
from pgqueue.sql import queries
from tests.bench import ceiling, cli, client_cost, profile, report, server_cost, steal

STAT = """cpu  100 5 50 800 10 0 5 30 7 0
cpu0 50 2 25 400 5 0 2 15 7 0
intr 12345
"""


def test_parse_reads_the_all_cpu_line_and_leaves_guest_time_out():
    # user+nice+system+idle+iowait+irq+softirq+steal; guest (7) is inside user already.
    assert steal.parse(STAT) == (30, 1000)


def test_parse_without_a_cpu_line_or_steal_column_is_unknown():
    assert steal.parse("intr 1\n") is None
    assert steal.parse("cpu  1 2 3 4\n") is None


def test_share_is_stolen_ticks_over_all_ticks_between_snapshots():
    assert steal.share((30, 1000), (80, 1200)) == 0.25
    assert steal.share(None, (80, 1200)) is None
    assert steal.share((30, 1000), (30, 1000)) is None  # no tick passed: unknown, not 0


def test_snapshot_of_this_machine_is_consistent():
    now = steal.snapshot()
    if steal.STAT.exists():
        assert now is not None and 0 <= now[0] <= now[1]
    else:
        assert now is None


def test_steal_line_names_the_worst_measurement():
    line = report.steal_line(
        {"pgqueue": {"w2_async_c10_p1": [0.01, 0.20]}, "ceiling": {"insert": [0.0, None]}}
    )
    assert "3 measurements" in line
    assert "median 1.0%" in line
    assert "1 at 5 % or more" in line
    assert "most 20% (pgqueue, W2 async, 1 proc x 10 (/s))" in line
    assert report.steal_line({"pgqueue": {"w1_single": [None]}}) == ""
    assert report.steal_line({"oban": {"w3": [0.07]}}).endswith("most 7% (oban, W3 latency)")


def test_server_cost_sends_what_w1_sends():
    # A plain enqueue of the bench's no-op job, through the engine's own choice of
    # statement: insert_job_plain, four values by position, the schema's channel.
    statement, params = server_cost.STATEMENTS["pgqueue insert_job_plain"]
    assert statement == queries(server_cost.SCHEMA).insert_job_plain
    assert tuple(params) == ("bench", "noop", '{"i":1}', channel(server_cost.SCHEMA))
    assert statement.count("%s") == len(params)
    statement, params = server_cost.STATEMENTS["ceiling INSERT"]
    assert statement == ceiling.INSERT
    assert statement.count("%s") == len(params) == 2


def test_profile_summary_names_native_frames_and_their_system_calls(tmp_path):
    # py-spy --native: C frames under the Python ones, some with no line number.
    raw = tmp_path / "w2.txt"
    raw.write_text(
        "run (pgqueue/_producer.py:130);_send_query_prepared (psycopg/_cursor_base.py:602);"
        "PQsendQueryPrepared (libpq-e9b5c9ac.so.5.18);send (libc.so.6) 3\n"
        "run (pgqueue/_producer.py:130);select (selectors.py:468);"
        "select_epoll_poll (selectmodule.c.h:841) 1\n"
        "run (pgqueue/_producer.py:130);decide (pgqueue/_outcomes.py:150) 1\n"
    )
    text = profile.summarise(raw)
    assert "60.0 %  send (libc.so.6)\n" in text
    assert f"80.0 %  {profile.NATIVE_AREA}" in text
    assert "20.0 %  pgqueue" in text
    assert profile.frame_key("0x7f6b15e4524a (libc.so.6)") == "0x7f6b15e4524a (libc.so.6)"


def test_profile_native_area_is_decided_by_the_file_name_alone():
    native = ["libc.so.6)", "libpq-e9b5c9ac.so.5.18)", "selectmodule.c.h)", "[vdso])", "?)",
              "_datetimemodule.c)", "libpython3.11.so.1.0)", "x/y/ops.cpp)"]  # fmt: skip
    python = ["/srv/app.solver/x.py)", "/srv/.sockets/run.py)", "selectors.py)", "<string>)",
              "pgqueue/_engine.py)", "libso.py)"]  # fmt: skip
    assert [p for p in native if profile._area(p) != profile.NATIVE_AREA] == []
    assert [p for p in python if profile._area(p) == profile.NATIVE_AREA] == []


def test_profile_records_native_frames_only_by_stopping_the_process(tmp_path, monkeypatch):
    monkeypatch.setattr(profile, "py_spy", lambda: "py-spy")
    out = tmp_path / "raw.txt"
    assert "--nonblocking" in profile.record(["--pid", "1"], out)
    native = profile.record(["--pid", "1"], out, native=True)
    assert "--native" in native and "--nonblocking" not in native


def test_client_cost_table_adds_each_layer_to_the_one_above_it():
    # Per layer: the CPU and wall samples of three rounds; the table reads their medians.
    medians = [(50, 150), (60, 200), (62, 205), (70, 215), (80, 240), (90, 300)]
    samples = [([c, c - 9, c + 1], [w, w + 30, w - 10]) for c, w in medians]
    lines = client_cost.table(samples).splitlines()
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:7]] for line in lines[2:8]
    }
    assert rows["ceiling INSERT, one connection"] == ["50.0", "", "150.0", "[140-180]", ""]
    assert rows["pgqueue's statement, one connection"] == ["60.0", "", "200.0", "[190-230]", ""]
    assert rows["+ fetch its RETURNING row"] == ["62.0", "+2.0", "205.0", "[195-235]", "+5.0"]
    assert rows["Worker.enqueue (+ the spec)"] == ["90.0", "+10.0", "300.0", "[290-330]", "+60.0"]
    assert lines[-1].startswith("Worker.enqueue's wall time is 2.00x the ceiling's INSERT (50% of")


def test_bench_compiles_pgqueue_as_an_install_would(tmp_path, monkeypatch):
    assert all((cli.ROOT / folder / "__init__.py").exists() for folder in cli.SOURCES)
    for folder in cli.SOURCES:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "m.py").write_text("X = 1\n")
    monkeypatch.setattr(cli, "ROOT", tmp_path)
    cli.compile_sources()
    for folder in cli.SOURCES:
        assert Path(importlib.util.cache_from_source(str(tmp_path / folder / "m.py"))).exists()


def test_bench_stops_on_a_module_that_does_not_compile(tmp_path, monkeypatch):
    for folder in cli.SOURCES:
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "cli" / "broken.py").write_text("def (:\n")
    monkeypatch.setattr(cli, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="cli does not compile"):
        cli.compile_sources()


def test_steady_w2_takes_the_median_start_up_out_of_the_median_drain():
    results = {
        "pgqueue": {
            "w2_async_c100_p1": [19_000, 23_000, 24_000],  # PEERS.md's clock: not this one
            "w2_async_c100_p1_exact": [20_000, 24_000, 25_000],
            "w2_startup_c100": [190, 200],
        },
        "peer": {"w2_async_c100_p1_exact": [3_000]},  # no start-up measured: no figure
        "odd": {"w2_async_c100_p1_exact": [100_000], "w2_startup_c100": [500]},  # longer
    }
    report.add_steady(results, 30_000)
    # 30,000 jobs at 24,000/s: 1.25 s, of which 0.195 s start-up.
    assert results["pgqueue"]["w2_async_c100_p1_steady"] == [pytest.approx(30_000 / 1.055)]
    assert "w2_async_c100_p1_steady" not in results["peer"]
    assert "w2_async_c100_p1_steady" not in results["odd"]
    like = report.like_for_like(results, {"claim_ack_b100": [56_872]})
    assert "taken out (/s) / W5 claim+ack, 2 conns, batch 100 (/s) | 50 %" in like


def test_a_start_up_in_ms_is_better_lower_against_a_peer():
    results = {
        "pgqueue": {"w2_startup_c100": [200.0], "w2_async_c100_p1": [20_000]},
        "peer": {"w2_startup_c100": [400.0], "w2_async_c100_p1": [10_000]},
    }
    text = report.peers_ratio_table(results, ["pgqueue", "peer"])
    assert "| W2 start-up: spawn to its first job done, 1 proc x 100 (ms) | 2.00x" in text
    assert "| W2 async, 1 proc x 100 (/s)" in text and "2.00x" in text
    assert report.lower_is_better("w3_p99") and not report.lower_is_better("w2_async_c100_p1")


def test_w1_single_alternating_is_a_target_line_of_its_own_fraction():
    results = {
        "pgqueue": {
            "w1_single_sync_alternating": [1_900.0, 2_000.0, 2_100.0],
            "w1_single_sync_alternating_fraction": [0.78, 0.81, 0.93],
        }
    }
    ceiling = {"insert": [2_000.0], "insert_alternating": [2_300.0, 2_400.0, 2_600.0]}
    line = next(t for t in report.targets(results, ceiling, None) if "alternating" in t["target"])
    # The median of each run's own fraction, not one median rate over another's.
    assert (line["value"], line["goal"], line["met"], line["unit"]) == (0.81, 0.9, False, "ratio")
    row = next(r for r in report.ceiling_table(ceiling).splitlines() if "alternating" in r)
    assert [c.strip() for c in row.split("|")[1:3]] == [
        "W1's alternating single-row INSERT (/s)",
        "2,400 [2,300-2,600]",
    ]


def test_alternating_rounds_take_turns_and_read_each_layer_as_itself(monkeypatch):
    seen = {}
    walls = {0: [400.0, 500.0, 420.0, 380.0], 5: [500.0, 600.0, 500.0, 500.0]}

    def measure(dsn, n, rounds, seed=0, only=None, reverse=False):
        seen.update(n=n, rounds=rounds, only=only, reverse=reverse)
        return [([1.0] * rounds, walls[i]) if i in walls else ([], []) for i in range(6)]

    monkeypatch.setattr(client_cost, "measure", measure)
    enqueue, insert, fraction = client_cost.alternating("dsn", 300, 4)
    assert seen == {"n": 300, "rounds": 4, "only": (0, 5), "reverse": True}
    assert enqueue == pytest.approx(1e6 / 500.0)  # Worker.enqueue: the last layer
    assert insert == pytest.approx(1e6 / 410.0)  # the ceiling's INSERT: the first
    # Per round 0.80, 0.833, 0.84, 0.76: the median of the rounds' own ratios.
    assert fraction == pytest.approx((0.8 + 500 / 600) / 2)


def test_the_bench_records_the_three_figures_of_the_alternating_rounds(monkeypatch, tmp_path):
    calls = []

    def alternating(dsn, n, rounds):
        calls.append((dsn, n, rounds))
        return 1_800.0, 2_200.0, 0.82

    monkeypatch.setattr(cli.client_cost, "alternating", alternating)
    bench = cli.Bench(argparse.Namespace(quick=True), "postgresql://u@h/db", tmp_path)
    bench.measure_alternating("postgresql://u@h/pgqueue_bench")
    assert bench.results["pgqueue"]["w1_single_sync_alternating"] == [1_800.0]
    assert bench.results["pgqueue"]["w1_single_sync_alternating_fraction"] == [0.82]
    assert bench.ceiling["insert_alternating"] == [2_200.0]
    assert calls == [("postgresql://u@h/pgqueue_bench", 100, 4)]


def test_a_failed_alternating_measurement_records_nothing(monkeypatch, tmp_path):
    def alternating(dsn, n, rounds):
        raise RuntimeError("server gone")

    monkeypatch.setattr(cli.client_cost, "alternating", alternating)
    bench = cli.Bench(argparse.Namespace(quick=True), "postgresql://u@h/db", tmp_path)
    bench.measure_alternating("postgresql://u@h/pgqueue_bench")
    assert bench.results == {} and bench.ceiling == {}
    assert bench.errors == ["pgqueue w1_single_sync_alternating: RuntimeError: server gone"]


class _FakeSystem:
    name = "pgqueue"
    kinds = ("async",)

    adapter = SimpleNamespace(BACKGROUND_SQL=["-- rows"], TABLE="jobs")  # the adapter module

    def __init__(self, events):
        self.events = events

    def reset(self, *statements):
        self.events.append("reset")
        if "broken reset" in self.events:
            raise RuntimeError("server gone")


def _w2_fake(w2_1x10, w4):
    """A stand-in for ``workloads.w2_process``: W4 (``keep_after_id`` set) reads ``w4()``,
    W2 1 x 10 as W4 divides by it ``w2_1x10()`` (an exception is raised), the rest 1/s."""

    def w2_process(system, n, *, concurrency, processes=1, kind="async", analyze=False,
                   keep_after_id=None):  # fmt: skip
        if keep_after_id is not None:
            assert keep_after_id == 42  # the top id of the background built just before
            rate = w4()
        elif (concurrency, processes, analyze, n) == (10, 1, False, cli.QUICK["w2"]):
            rate = w2_1x10()
        else:
            rate = 1.0
        if isinstance(rate, Exception):
            raise rate
        return rate, rate

    return w2_process


def _run_bench(monkeypatch, tmp_path, events, w2_process, only, runs, background=None):
    """``Bench.run`` of ``only`` on one fake pgqueue recording into ``events``; W4's
    background is ``background`` (default: none built, its top id 42)."""
    monkeypatch.setattr(cli.workloads, "w2_process", w2_process)
    monkeypatch.setattr(cli.workloads, "w2_startup", lambda system: 200.0)
    monkeypatch.setattr(cli.workloads, "w4_background", background or (lambda system, rows: 42))
    args = argparse.Namespace(quick=True, only=only, runs=runs, peer_runs=None,
                              no_pgqueue=False, peers=False, peer=None)  # fmt: skip
    bench = cli.Bench(args, "postgresql://u@h/db", tmp_path)
    monkeypatch.setattr(bench, "systems", lambda: [_FakeSystem(events)])
    bench.run()
    return bench


def test_w4_runs_in_each_run_beside_that_runs_w2_on_a_background_of_its_own(monkeypatch, tmp_path):
    events: list[str] = []
    w2_rates, w4_rates = iter([10_000.0, 9_000.0, 8_000.0]), iter([8_500.0, 8_100.0, 7_900.0])

    def w2(rates=w2_rates):
        events.append("w2")
        return next(rates)

    def w4(rates=w4_rates):
        events.append("w4")
        return next(rates)

    def w4_background(system, rows):
        events.append("background")
        return 42

    w2_process = _w2_fake(w2, w4)
    bench = _run_bench(monkeypatch, tmp_path, events, w2_process, ("W2", "W4"), 3, w4_background)
    # Each run: its W2, then a fresh background, W4 on it, and the table cleared again;
    # no W4 left for the end, minutes from the W2 it is a ratio of.
    assert [e for e in events if e != "reset"] == ["w2", "background", "w4"] * 3
    assert events[events.index("w4") + 1] == "reset"
    assert bench.results["pgqueue"]["w4_async_c10_p1"] == [8_500.0, 8_100.0, 7_900.0]
    assert bench.results["pgqueue"]["w4_fraction"] == pytest.approx([0.85, 0.9, 0.9875])
    line = next(t for t in report.targets(bench.results, {}, None) if "its own run" in t["target"])
    assert (line["value"], line["met"]) == (pytest.approx(0.9), True)
    # The old line, one median over another, stays beside it: 8,100 / 9,000.
    old = next(
        t for t in report.targets(bench.results, {}, None) if t["target"] == "W4 >= 80 % of W2"
    )
    assert old["value"] == pytest.approx(0.9)


def test_a_w4_whose_run_measured_no_w2_records_no_ratio(monkeypatch, tmp_path):
    w2_process = _w2_fake(lambda: 7_000.0, lambda: 7_000.0)
    bench = _run_bench(monkeypatch, tmp_path, [], w2_process, ("W4",), 2)
    assert bench.results["pgqueue"]["w4_async_c10_p1"] == [7_000.0, 7_000.0]
    assert "w4_fraction" not in bench.results["pgqueue"]


def test_w3_splits_each_latency_into_the_enqueue_call_and_its_return_to_the_start(
    monkeypatch, tmp_path
):
    from tests.bench.peers import _common

    starts = tmp_path / "starts.txt"
    monkeypatch.setenv(_common.STARTS_ENV, str(starts))

    async def enqueue(i: int) -> None:
        # A slow call for job 3 (a stalled commit); each job starts 5 ms after its call
        # returns, as a worker woken by the commit's notification would.
        await asyncio.sleep(0.06 if i == 3 else 0.002)
        asyncio.get_running_loop().call_later(0.005, _common.record_start, i)

    result = asyncio.run(_common.latency_run(enqueue, 5, 0.01, str(starts), rest=0))
    assert result["missing"] == 0
    for total, call, wake in zip(
        result["latencies_ms"], result["enqueue_ms"], result["wake_ms"], strict=True
    ):
        assert total == pytest.approx(call + wake)
        assert call >= 2 and wake >= 5
    assert result["enqueue_ms"][3] >= 60


def test_the_bench_records_w3s_parts_beside_its_percentiles(tmp_path):
    bench = cli.Bench(argparse.Namespace(quick=True), "postgresql://u@h/db", tmp_path)
    w3 = {"p50": 2.0, "p95": 3.0, "p99": 9.0, "max": 30.0, "missing": 0,
          "enqueue_p50": 1.2, "enqueue_p99": 8.0, "wake_p50": 0.9, "wake_p99": 1.5}  # fmt: skip
    bench.measure("pgqueue", "w3", lambda: w3)
    got = {k: v for k, v in bench.results["pgqueue"].items()}
    assert got == {f"w3_{k}": [v] for k, v in w3.items() if k not in ("max", "missing")}
    assert all(report.lower_is_better(k) for k in got)
    # An adapter that sends only the percentiles (an older venv) records those alone.
    bench.measure("peer", "w3", lambda: {"p50": 2.5, "p95": 3.5, "p99": 4.5})
    assert sorted(bench.results["peer"]) == ["w3_p50", "w3_p95", "w3_p99"]


def test_a_failed_or_bounded_w2_gives_its_w4_no_ratio_and_a_broken_reset_no_end(
    monkeypatch, tmp_path
):
    from tests.bench.systems import BoundHit

    events: list[str] = ["broken reset"]
    w2_outcomes = iter([10_000.0, RuntimeError("worker died"), BoundHit("slow", 100, 1.0)])
    w2_process = _w2_fake(lambda: next(w2_outcomes), lambda: 8_000.0)
    bench = _run_bench(monkeypatch, tmp_path, events, w2_process, ("W2", "W4"), 3)
    # Run 1's W2 is the only one to divide by: run 2's failed, run 3's hit its bound
    # (a lower bound would make the ratio look better than it is).
    assert bench.results["pgqueue"]["w2_async_c10_p1"] == [10_000.0, 100.0]
    assert bench.results["pgqueue"]["w4_async_c10_p1"] == [8_000.0] * 3
    assert bench.results["pgqueue"]["w4_fraction"] == [0.8]
    # Every run went on after its reset failed; each failure is in the errors.
    assert bench.errors.count("pgqueue reset: RuntimeError: server gone") == 3
