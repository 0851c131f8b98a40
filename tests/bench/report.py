"""Medians, ratios and targets: the table ``make bench`` prints and the JSON it writes."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Figure key -> label, in table order. "/s" figures: higher is better; "ms": lower.
FIGURES: dict[str, str] = {
    "w1_single": "W1 single enqueue, async API (/s)",
    "w1_single_sync": "W1 single enqueue, sync API (/s)",
    "w1_single_sync_alternating": "W1 single enqueue, sync API, rounds alternating with an INSERT (/s)",
    "w1_single_sync_alternating_fraction": "W1 single, sync API, as a fraction of the INSERT it alternates with (ratio)",
    "w1_bulk": "W1 bulk enqueue (/s)",
    "w1_bulk_specs": "W1 bulk, pgqueue's specs API: Client.enqueue_many([W.new(d)...]) (/s)",
    "w1_unique_bulk": "W1 unique: new jobs in one batch, beside 5x as many live unique jobs (/s)",
    "w1_unique_dup_bulk": "W1 unique: the same batch again, every job a duplicate (/s)",
    "w1_unique_dup_single": "W1 unique: single duplicate enqueues, sync API (/s)",
    "w2_async_c10_p1": "W2 async, 1 proc x 10 (/s)",
    "w2_async_c10_p1_analyze": "W2 async, 1 proc x 10, after ANALYZE (/s)",
    "w2_async_c10_p1_backlog": "W2 async, 1 proc x 10, 150,000-job backlog, no ANALYZE (/s)",
    "w2_async_c100_p1": "W2 async, 1 proc x 100 (/s)",
    "w2_async_c10_p2": "W2 async, 2 procs x 10 (/s)",
    "w2_async_c0_p1": "W2 async, 1 proc, library defaults (/s)",
    "w2_sync_c10_p1": "W2 sync, 1 proc x 10 (/s)",
    "w2_sync_c100_p1": "W2 sync, 1 proc x 100 (/s)",
    "w2_sync_c10_p2": "W2 sync, 2 procs x 10 (/s)",
    "w2_async_c10_p1_exact": "W2 async, 1 proc x 10, clock at the last completion (/s)",
    "w2_async_c100_p1_exact": "W2 async, 1 proc x 100, clock at the last completion (/s)",
    "w2_async_c10_p2_exact": "W2 async, 2 procs x 10, clock at the last completion (/s)",
    "w2_startup_c100": "W2 start-up: spawn to its first job done, 1 proc x 100 (ms)",
    "w2_async_c100_p1_steady": "W2 async, 1 proc x 100, clock at the last completion, start-up taken out (/s)",
    "w3_p50": "W3 enqueue->start p50 (ms)",
    "w3_p95": "W3 enqueue->start p95 (ms)",
    "w3_p99": "W3 enqueue->start p99 (ms)",
    "w3_enqueue_p50": "W3's enqueue call alone (round trip, commit), p50 (ms)",
    "w3_enqueue_p99": "W3's enqueue call alone (round trip, commit), p99 (ms)",
    "w3_wake_p50": "W3 from the enqueue call's return to the job's start, p50 (ms)",
    "w3_wake_p99": "W3 from the enqueue call's return to the job's start, p99 (ms)",
    "w4_async_c10_p1": "W4 = W2 async 1x10 on the big table (/s)",
    "w4_fraction": "W4 as a fraction of the W2 1x10 of its own run (ratio)",
    "w5_engine_l1_b10": "W5 pgqueue's claims alone, 1 lane x 10, no job run (/s)",
    "w5_engine_l2_b50": "W5 pgqueue's claims alone, 2 lanes x 50, no job run (/s)",
}
CEILING: dict[str, str] = {
    "insert": "W5 single-row INSERT (/s)",
    "insert_async": "W5 single-row INSERT, psycopg's async driver (/s)",
    "insert_alternating": "W1's alternating single-row INSERT (/s)",
    "copy": "W5 COPY (/s)",
    "claim_ack_b10": "W5 claim+ack, 2 conns, batch 10 (/s)",
    "claim_ack_b50": "W5 claim+ack, 2 conns, batch 50 (/s)",
    "claim_ack_b100": "W5 claim+ack, 2 conns, batch 100 (/s)",
}
# Which ceiling each figure is a fraction of.
AGAINST_CEILING = {
    "w1_single": "insert",
    "w1_single_sync": "insert",
    "w1_bulk": "copy",
    "w1_bulk_specs": "copy",
    "w2_async_c10_p1": "claim_ack_b10",
    "w2_async_c10_p2": "claim_ack_b10",
    "w2_sync_c10_p1": "claim_ack_b10",
    "w2_async_c100_p1": "claim_ack_b100",
    "w2_sync_c100_p1": "claim_ack_b100",
    "w4_async_c10_p1": "claim_ack_b10",
}
# Figures against the same work with only pgqueue's own layer taken away (not targets):
# the async single enqueue against a bare INSERT through the same async driver; W2 by
# the clock stopped at the last completion instead of PEERS.md's 0.2 s poll, against the
# ceiling; W2 1 x 100 without its start-up (the ceiling's clock starts after its
# connections, W2's before the interpreter); and W2 against pgqueue's claims run alone
# in the producers' shape (so the ratio is what running the jobs, their tasks, outcomes
# and the producer's waits, costs on top).
LIKE_FOR_LIKE = (
    ("w1_single", "ceiling", "insert_async"),
    ("w2_async_c10_p1_exact", "ceiling", "claim_ack_b10"),
    ("w2_async_c100_p1_exact", "ceiling", "claim_ack_b100"),
    ("w2_async_c100_p1_steady", "ceiling", "claim_ack_b100"),
    ("w2_async_c10_p1", "pgqueue", "w5_engine_l1_b10"),
    ("w2_async_c100_p1", "pgqueue", "w5_engine_l2_b50"),
)
PEERS_MD_BEST = {"w3_p99": 2.9}  # best peer figure of PEERS.md, when no peer ran here


def med(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    m, lo, hi = statistics.median(values), min(values), max(values)
    fmt = _fmt(m)
    return fmt if len(values) == 1 else f"{fmt} [{_fmt(lo)}-{_fmt(hi)}]"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def figures_table(results: dict[str, dict[str, list[float]]], systems: list[str]) -> str:
    rows = []
    for key, label in FIGURES.items():
        if any(results.get(s, {}).get(key) for s in systems):
            rows.append([label, *(cell(results.get(s, {}).get(key)) for s in systems)])
    return table(["figure", *systems], rows)


def ceiling_table(ceiling: dict[str, list[float]]) -> str:
    return table(
        ["SQL-only ceiling", "value"], [[CEILING[k], cell(ceiling.get(k))] for k in CEILING]
    )


def ceiling_ratios(
    results: dict[str, dict[str, list[float]]], ceiling: dict[str, list[float]], systems: list[str]
) -> str:
    rows = []
    for key, against in AGAINST_CEILING.items():
        top = med(ceiling.get(against))
        if not top or not any(results.get(s, {}).get(key) for s in systems):
            continue
        values = [med(results.get(s, {}).get(key)) for s in systems]
        rows.append(
            [
                f"{FIGURES[key]} / {CEILING[against]}",
                *(_pct(None if v is None else v / top) for v in values),
            ]
        )
    return table(["fraction of the ceiling", *systems], rows)


def like_for_like(
    results: dict[str, dict[str, list[float]]], ceiling: dict[str, list[float]]
) -> str:
    pg = results.get("pgqueue", {})
    rows = []
    for key, source, against in LIKE_FOR_LIKE:
        ours, base = med(pg.get(key)), med((ceiling if source == "ceiling" else pg).get(against))
        if ours is not None and base:
            label = CEILING[against] if source == "ceiling" else FIGURES[against]
            rows.append([f"{FIGURES[key]} / {label}", _pct(ours / base)])
    return table(["like for like (not targets)", "pgqueue"], rows) if rows else ""


def lower_is_better(key: str) -> bool:
    return FIGURES.get(key, "").endswith("(ms)")


def add_steady(results: dict[str, dict[str, list[float]]], n: int) -> None:
    """W2 1 x 100 with its start-up taken out, for each system that has both: ``n`` jobs
    over the drain time by the clock at the last completion (PEERS.md's 0.2 s poll would
    add its own lateness) less the start-up, medians of each (one figure, no range)."""
    for figures in results.values():
        rate = med(figures.get("w2_async_c100_p1_exact"))
        startup = med(figures.get("w2_startup_c100"))
        if rate and startup is not None and n / rate > startup / 1000:
            figures["w2_async_c100_p1_steady"] = [n / (n / rate - startup / 1000)]


def best_peer(
    results: dict[str, dict[str, list[float]]], key: str, lower: bool = False
) -> tuple[str, float] | None:
    found = [(s, med(r.get(key))) for s, r in results.items() if s != "pgqueue" and r.get(key)]
    found = [(s, v) for s, v in found if v is not None]
    if not found:
        return None
    return (min if lower else max)(found, key=lambda sv: sv[1])


def targets(
    results: dict[str, dict[str, list[float]]],
    ceiling: dict[str, list[float]],
    memory: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Issue 6's targets, each with the measured value and whether it is met."""
    pg = results.get("pgqueue", {})
    m = lambda key: med(pg.get(key))  # noqa: E731
    c = lambda key: med(ceiling.get(key))  # noqa: E731
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        goal: float | None,
        check: Callable[[float, float], bool],
        unit: str,
    ) -> None:
        ok = None if value is None or goal is None else bool(check(value, goal))
        out.append({"target": name, "value": value, "goal": goal, "met": ok, "unit": unit})

    ge = lambda v, g: v >= g  # noqa: E731
    peer10 = best_peer(results, "w2_async_c10_p1")
    add("W2 1x10 >= 8,000/s", m("w2_async_c10_p1"), 8000, ge, "/s")
    add(
        f"W2 1x10 >= 2x best peer ({peer10[0] if peer10 else 'none ran'})",
        m("w2_async_c10_p1"),
        2 * peer10[1] if peer10 else None,
        ge,
        "/s",
    )
    best = max(
        (v for k in ("w2_async_c10_p1", "w2_async_c100_p1") if (v := m(k)) is not None),
        default=None,
    )
    add("W2 best setting >= 15,000/s", best, 15000, ge, "/s")
    peer0 = best_peer(results, "w2_async_c0_p1")
    add("W2 best setting >= 2x PgQueuer uncapped", best, 2 * peer0[1] if peer0 else None, ge, "/s")
    add("W2 1x10 >= 50 % of W5 batch 10", m("w2_async_c10_p1"), _half(c("claim_ack_b10")), ge, "/s")
    add(
        "W2 1x100 >= 50 % of W5 batch 100",
        m("w2_async_c100_p1"),
        _half(c("claim_ack_b100")),
        ge,
        "/s",
    )
    for conf in ("c10_p1", "c100_p1", "c10_p2"):
        a, s = m(f"w2_async_{conf}"), m(f"w2_sync_{conf}")
        add(
            f"W2 sync within 30 % of async ({conf})",
            None if a is None or s is None else s / a,
            0.7,
            ge,
            "ratio",
        )
    add("W1 single >= 4,500/s", m("w1_single"), 4500, ge, "/s")
    add(
        "W1 single >= 90 % of W5 INSERT",
        m("w1_single"),
        None if c("insert") is None else 0.9 * c("insert"),
        ge,
        "/s",
    )
    add(
        "W1 single >= 90 % of an INSERT in alternating rounds (sync API)",
        m("w1_single_sync_alternating_fraction"),
        0.9,
        ge,
        "ratio",
    )
    add("W1 bulk >= 50 % of W5 COPY", m("w1_bulk"), _half(c("copy")), ge, "/s")
    p99 = best_peer(results, "w3_p99", lower=True)
    goal = p99[1] if p99 else PEERS_MD_BEST["w3_p99"]
    add(
        f"W3 p99 below every peer ({p99[0] if p99 else 'PEERS.md'})",
        m("w3_p99"),
        goal,
        lambda v, g: v < g,
        "ms",
    )
    w2, w4 = m("w2_async_c10_p1"), m("w4_async_c10_p1")
    add("W4 >= 80 % of W2", None if w2 is None or w4 is None else w4 / w2, 0.8, ge, "ratio")
    add("W4 >= 80 % of the W2 of its own run (median of the runs)", m("w4_fraction"), 0.8, ge,
        "ratio")  # fmt: skip
    an = m("w2_async_c10_p1_analyze")
    add(
        "W2 after ANALYZE within 15 % of W2 right after prefill",
        None if w2 is None or an is None else an / w2,
        0.15,
        lambda v, g: abs(v - 1) <= g,
        "ratio",
    )
    big = m("w2_async_c10_p1_backlog")
    add(
        "W2 on a 5x backlog, never analyzed, >= 80 % of W2 (not an issue-6 line)",
        None if w2 is None or big is None else big / w2,
        0.8,
        ge,
        "ratio",
    )
    if memory:
        add(
            "Memory flat (+-10 %) over the memory run",
            memory.get("growth"),
            0.10,
            lambda v, g: abs(v) <= g,
            "ratio",
        )
    return out


def _half(x: float | None) -> float | None:
    return None if x is None else x / 2


def targets_table(rows: list[dict[str, Any]]) -> str:
    def show(v: float | None, unit: str) -> str:
        if v is None:
            return "-"
        return f"{v:.2f}" if unit == "ratio" else _fmt(v) + (" ms" if unit == "ms" else "")

    verdict = {True: "met", False: "NOT met", None: "n/a"}
    return table(
        ["target (issue 6)", "pgqueue", "goal", "value/goal", ""],
        [
            [r["target"], show(r["value"], r["unit"]), show(r["goal"], r["unit"]),
             "-" if r["value"] is None or not r["goal"] or r["unit"] == "ratio" else _pct(r["value"] / r["goal"]),
             verdict[r["met"]]]
            for r in rows
        ],
    )  # fmt: skip


def peers_ratio_table(results: dict[str, dict[str, list[float]]], systems: list[str]) -> str:
    peers = [s for s in systems if s != "pgqueue"]
    rows = []
    for key, label in FIGURES.items():
        ours = med(results.get("pgqueue", {}).get(key))
        if ours is None:
            continue
        cells = []
        for p in peers:
            theirs = med(results.get(p, {}).get(key))
            if theirs is None or theirs <= 0 or ours <= 0:  # a ratio of nothing
                cells.append("-")
            else:  # > 1 means pgqueue is better (faster, or lower latency)
                cells.append(f"{(theirs / ours if lower_is_better(key) else ours / theirs):.2f}x")
        if any(c != "-" for c in cells):
            rows.append([label, *cells])
    return table(["pgqueue vs peer (>1 = pgqueue better)", *peers], rows) if rows else ""


def figure_label(key: str) -> str:
    """How a measurement is named in the bench's output (W3's one measurement gives the
    three percentile figures)."""
    return FIGURES.get(key) or CEILING.get(key) or ("W3 latency" if key == "w3" else key)


def steal_line(steal: dict[str, dict[str, list[float | None]]]) -> str:
    """One line on how much CPU the hypervisor took during the measurements: a figure
    measured while much was stolen is slow for a reason outside the code (steal.py)."""
    seen = [
        (share, system, key)
        for system, figures in steal.items()
        for key, shares in figures.items()
        for share in shares
        if share is not None
    ]
    if not seen:
        return ""
    worst = max(seen)
    above = sum(1 for share, _, _ in seen if share >= 0.05)
    label = figure_label(worst[2])
    return (
        f"CPU stolen by the hypervisor during the {len(seen)} measurements: median "
        f"{statistics.median(s for s, _, _ in seen):.1%}, {above} at 5 % or more; "
        f"most {worst[0]:.0%} ({worst[1]}, {label})"
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
