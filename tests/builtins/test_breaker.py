"""The circuit breaker's state machine, with a fake clock: no servers, no sleeping."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pgqueue
from pgqueue.builtins import _breaker
from pgqueue.builtins._breaker import ANSWERED, CLOSED, HALF_OPEN, OPEN, TRANSPORT, CircuitBreaker
from pgqueue.builtins._config import BreakerSettings
from pgqueue.builtins._pipeline import through


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, cooldown: float = 10.0, **kw) -> tuple[CircuitBreaker, Clock, list]:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(
        "dest",
        threshold=threshold,
        cooldown=cooldown,
        clock=clock,
        rng=lambda: 0.5,
        on_change=lambda _b, old, new: changes.append((old, new)),
        **kw,
    )
    return b, clock, changes


def test_opens_after_threshold_failures_in_a_row() -> None:
    b, _, changes = make(threshold=3)
    for _ in range(2):
        assert b.admit() is None
        b.failed()
    assert b.state == CLOSED
    b.succeeded()  # a success in between resets the count
    for _ in range(2):
        b.failed()
    assert b.state == CLOSED
    b.failed()
    assert b.state == OPEN and changes == [(CLOSED, OPEN)]


def test_open_snoozes_until_the_cooldown_then_lets_one_probe_through() -> None:
    b, clock, changes = make(threshold=1, cooldown=10)
    b.failed()
    wait = b.admit()
    # The rest of the cooldown plus a spread of up to half a cooldown.
    assert wait is not None and 10 <= wait <= 15
    clock.now += 4
    assert 6 <= b.admit() <= 11
    clock.now += 6
    assert b.admit() is None  # the probe
    assert b.state == HALF_OPEN
    assert b.admit() is not None  # everyone else waits for the probe
    b.succeeded()
    assert b.state == CLOSED and b.admit() is None
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_a_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    b, clock, changes = make(threshold=1, cooldown=10)
    b.failed()
    clock.now += 10
    assert b.admit() is None
    b.failed()
    assert b.state == OPEN
    clock.now += 9
    assert b.admit() is not None
    clock.now += 1
    assert b.admit() is None and b.state == HALF_OPEN
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN)]


def test_a_silent_probe_is_replaced_after_its_lease() -> None:
    b, clock, _ = make(threshold=1, cooldown=10, probe_lease=60)
    b.failed()
    clock.now += 10
    assert b.admit() is None  # the probe, which never reports
    clock.now += 59
    assert b.admit() is not None
    clock.now += 1
    assert b.admit() is None  # a new probe


def test_guard_records_transport_answers_and_local_errors() -> None:
    b, clock, _ = make(threshold=2, cooldown=10)

    def classify(exc: Exception) -> str:
        return {ConnectionError: TRANSPORT, PermissionError: ANSWERED}.get(type(exc), "other")

    for error in (ConnectionError, PermissionError, ConnectionError, ValueError):
        with pytest.raises(error), b.guard(classify):
            raise error("x")
    assert b.state == CLOSED and b.failures == 1  # the answer reset the count
    with pytest.raises(ConnectionError), b.guard(classify):
        raise ConnectionError("down")
    assert b.state == OPEN
    with pytest.raises(pgqueue.Snooze) as snoozed, b.guard(classify):
        raise AssertionError("an open circuit runs nothing")
    assert snoozed.value.seconds >= 10
    clock.now += 10
    with pytest.raises(ValueError), b.guard(classify):  # the probe fails locally...
        raise ValueError("a bug, not the destination")
    assert b.state == HALF_OPEN
    with b.guard(classify):  # ...so the next job probes at once
        pass
    assert b.state == CLOSED


def test_a_failure_once_the_outage_is_known_snoozes_instead_of_using_an_attempt() -> None:
    """Only the failures that find the outage cost attempts; a failed probe, or a job
    already under way when the circuit opened, waits for the next probe like the rest.
    Otherwise a long outage would discard its jobs one probe at a time."""
    b, clock, changes = make(threshold=2, cooldown=10)

    def classify(exc: Exception) -> str:
        return TRANSPORT if isinstance(exc, ConnectionError) else "other"

    slow = b.guard(classify)
    slow.__enter__()  # admitted while closed, fails only after the circuit opened
    for _ in range(2):
        with pytest.raises(ConnectionError), b.guard(classify):
            raise ConnectionError("refused")
    assert b.state == OPEN
    with pytest.raises(pgqueue.Snooze) as late:
        slow.__exit__(ConnectionError, ConnectionError("reset"), None)
    assert 10 <= late.value.seconds <= 15 and isinstance(late.value.__cause__, ConnectionError)
    for _ in range(50):  # a long outage: every probe fails, none costs its job an attempt
        clock.now += 10
        with pytest.raises(pgqueue.Snooze) as probe, b.guard(classify):
            raise ConnectionError("still refused")
        assert isinstance(probe.value.__cause__, ConnectionError) and b.state == OPEN
    assert b.failures == 53
    clock.now += 10
    with b.guard(classify):  # back: the probe succeeds
        pass
    assert b.state == CLOSED
    with pytest.raises(ConnectionError), b.guard(classify):  # news again: a failed attempt
        raise ConnectionError("refused")
    assert changes[:3] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    assert changes[-1] == (HALF_OPEN, CLOSED)


def test_a_failed_probe_is_free_only_within_the_jobs_patience() -> None:
    """Within ``patience`` of the first time the breaker held the job back, its failed
    probe snoozes it, its error kept in meta; past it the failure is raised and costs an
    attempt: a destination that never returns (or a job whose own request always fails)
    still ends discarded."""
    b, clock, _ = make(threshold=1, cooldown=10)

    def classify(exc: Exception) -> str:
        return TRANSPORT if isinstance(exc, ConnectionError) else "other"

    def job(held: float) -> pgqueue.Job:
        since = (datetime.now(UTC) - timedelta(seconds=held)).isoformat()
        return pgqueue.Job(id=1, worker="w", meta={"breaker_snoozes": 2, "breaker_since": since})

    def probe(j: pgqueue.Job) -> None:
        clock.now += 10
        with through(j, b, classify, patience=3600, describe=lambda e: f"said: {e}"):
            raise ConnectionError("refused")

    # Closed: the failure that opens the circuit costs its attempt.
    with (
        pytest.raises(ConnectionError),
        through(job(0), b, classify, patience=3600, describe=str),
    ):
        raise ConnectionError("refused")
    young = job(3500)
    with pytest.raises(pgqueue.Snooze):
        probe(young)
    assert young.meta_updates == {
        "breaker_snoozes": 3,
        "breaker": "dest",
        "breaker_error": "said: refused",
    }  # still held since the same time
    old = job(3700)
    with pytest.raises(ConnectionError, match="refused"):
        probe(old)
    assert old.meta_updates is None and b.state == OPEN


def test_patience_counts_from_the_first_hold_not_from_the_enqueue() -> None:
    """A job enqueued (or scheduled, or paused) long before the outage has all its
    patience when the outage meets it; once it gets through, a later outage gives it its
    patience again. With no patience at all, every failed probe costs an attempt."""
    b, clock, _ = make(threshold=1, cooldown=10)

    def classify(exc: Exception) -> str:
        return TRANSPORT if isinstance(exc, ConnectionError) else "other"

    week_old = datetime.now(UTC) - timedelta(days=7)
    j = pgqueue.Job(id=1, worker="w", inserted_at=week_old, scheduled_at=week_old)
    b.failed()  # the outage
    with pytest.raises(pgqueue.Snooze), through(j, b, classify, patience=3600, describe=str):
        raise AssertionError("an open circuit runs nothing")
    held = datetime.fromisoformat(j.meta_updates["breaker_since"])
    assert abs((datetime.now(UTC) - held).total_seconds()) < 60
    clock.now += 10
    with pytest.raises(pgqueue.Snooze), through(j, b, classify, patience=3600, describe=str):
        raise ConnectionError("still down")  # a failed probe, free: held only just now
    assert j.meta["breaker_since"] == held.isoformat() and j.meta["breaker_snoozes"] == 2
    clock.now += 10
    with through(j, b, classify, patience=3600, describe=str):
        pass  # back
    assert j.meta_updates["breaker_since"] is None
    b.failed()  # the next outage: a new hold, full patience
    with pytest.raises(pgqueue.Snooze), through(j, b, classify, patience=3600, describe=str):
        pass
    assert j.meta_updates["breaker_since"] not in (None, held.isoformat())

    impatient = pgqueue.Job(id=2, worker="w")
    clock.now += 10
    with (
        pytest.raises(ConnectionError),
        through(impatient, b, classify, patience=0, describe=str),
    ):
        raise ConnectionError("down")


def test_only_an_answer_ends_the_hold_and_a_clock_far_ahead_is_ignored() -> None:
    """A transport failure on a closed circuit (a restarted process's breaker) costs an
    attempt but is no answer: the patience keeps counting, or a destination that never
    returns would hold a job for max_attempts patiences. A breaker_since written by a
    host whose clock runs a year ahead would make the job's failed probes free for a
    year: it is ignored and the count starts again."""

    def classify(exc: Exception) -> str:
        return {ConnectionError: TRANSPORT, PermissionError: ANSWERED}.get(type(exc), "other")

    def held(since: datetime) -> pgqueue.Job:
        return pgqueue.Job(id=1, worker="w", meta={"breaker_since": since.isoformat()})

    now = datetime.now(UTC)
    closed, _, _ = make(threshold=5)
    long_held = held(now - timedelta(days=2.9))
    for error in (ConnectionError, ValueError):  # unreachable; a local error
        with pytest.raises(error), through(long_held, closed, classify, patience=1, describe=str):
            raise error("no answer")
        assert long_held.meta_updates is None
    with (
        pytest.raises(PermissionError),
        through(long_held, closed, classify, patience=1, describe=str),
    ):
        raise PermissionError("refused: an answer")
    assert long_held.meta_updates == {"breaker_since": None}

    b, clock, _ = make(threshold=1, cooldown=10)
    b.failed()
    clock.now += 10
    ahead = held(now + timedelta(days=365))
    with pytest.raises(pgqueue.Snooze), through(ahead, b, classify, patience=3600, describe=str):
        raise ConnectionError("still down")  # a failed probe: free, the count starts now
    restarted = datetime.fromisoformat(ahead.meta_updates["breaker_since"])
    assert abs((datetime.now(UTC) - restarted).total_seconds()) < 60


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["admit", "ok", "fail", "tick"]), st.floats(0, 20)),
        max_size=60,
    )
)
def test_invariants_hold_for_any_sequence(steps) -> None:
    b, clock, changes = make(threshold=3, cooldown=10, probe_lease=30)
    probes_in_flight = 0
    for op, dt in steps:
        before = b.state
        if op == "tick":
            clock.now += dt
        elif op == "admit":
            wait = b.admit()
            if before == CLOSED:
                assert wait is None
            if wait is not None:
                assert wait > 0 and b.state in (OPEN, HALF_OPEN)
            elif before != CLOSED:
                probes_in_flight += 1
                assert b.state == HALF_OPEN
        elif op == "ok":
            b.succeeded()
            assert b.state == CLOSED and b.failures == 0
            probes_in_flight = 0
        else:
            assert b.failed() == (before != CLOSED)  # the outage was known already
            if before == HALF_OPEN:
                assert b.state == OPEN
        assert b.state in (CLOSED, OPEN, HALF_OPEN)
        if b.state == CLOSED:
            probes_in_flight = 0
            assert b.failures < 3
    # Every change is reported once and really is a change.
    assert all(old != new for old, new in changes)
    for (_, new), (old, _) in itertools.pairwise(changes):
        assert new == old


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        # Ticks of the sizes that matter (none, the cooldown, the lease), so that short
        # sequences reach a replaced probe; the number also picks which probe releases.
        st.tuples(
            st.sampled_from(["enter", "release", "ok", "fail", "tick"]),
            st.sampled_from([0.0, 1.0, 10.0, 30.0]),
        ),
        max_size=80,
    )
)
@example(  # a probe replaced after its lease, then the late release of the first
    [
        ("fail", 0.0),
        ("tick", 10.0),
        ("enter", 0.0),
        ("tick", 30.0),
        ("enter", 0.0),
        ("release", 0.0),
        ("enter", 0.0),
    ]
)
def test_one_live_probe_at_a_time_and_each_change_reported_once(steps) -> None:
    """Admissions with their probe numbers, releases of any probe (late ones included):
    a second probe is let in only once every unreleased probe of the same half-open
    spell has outlived its lease, and every change of state or count is reported
    exactly once, to one of the two hooks."""
    clock = Clock()
    reports: list[tuple[str, int]] = []
    b = CircuitBreaker(
        "dest",
        threshold=1,
        cooldown=10,
        probe_lease=30,
        clock=clock,
        rng=lambda: 0.5,
        on_change=lambda br, _old, new: reports.append((new, br.failures)),
        on_failures=lambda br: reports.append((br.state, br.failures)),
    )
    live: dict[int, float] = {}  # probes of this half-open spell, not released
    handed_out: list[int] = []
    last = (b.state, b.failures)
    for op, x in steps:
        before, seen = b.state, len(reports)
        if op == "tick":
            clock.now += x
        elif op == "enter":
            wait, probe = b.admission()
            if probe is not None:
                assert before != CLOSED and b.state == HALF_OPEN and wait is None
                if before == HALF_OPEN:
                    assert all(clock.now - t >= 30 for t in live.values())
                else:
                    live.clear()  # a new spell
                live[probe] = clock.now
                handed_out.append(probe)
            else:
                assert (wait is None) == (before == CLOSED)
        elif op == "release":
            if handed_out:
                probe = handed_out[int(x) % len(handed_out)]
                b.released(probe)
                live.pop(probe, None)
        elif op == "ok":
            b.succeeded()
        else:
            b.failed()
        if b.state != HALF_OPEN:
            live.clear()
        now = (b.state, b.failures)
        if now != last:
            assert reports[seen:] == [now]
        else:
            assert len(reports) == seen
        last = now


def test_breaker_for_logs_and_emits_each_change(caplog) -> None:
    seen: list[dict] = []
    unsubscribe = pgqueue.subscribe("breaker_change", lambda **kw: seen.append(kw))
    try:
        caplog.set_level(logging.INFO, logger="pgqueue.builtins.breaker")
        b = _breaker.breaker_for("s3:http://x/bucket", BreakerSettings(threshold=2, cooldown=1))
        assert _breaker.breaker_for("s3:http://x/bucket") is b
        b.failed()
        b.failed()
        b.succeeded()
    finally:
        unsubscribe()
    name = "s3:http://x/bucket"
    # The count that leads up to opening is emitted too (the failures gauge reads 1,
    # not 0, after the first); only changes of state are logged.
    assert seen == [
        {"name": name, "state": "closed", "failures": 1},
        {"name": name, "state": "open", "failures": 2},
        {"name": name, "state": "closed", "failures": 0},
    ]
    text = caplog.text
    assert f"{name}: closed -> open after 2 transport failure(s)" in text
    assert f"{name}: open -> closed" in text
    assert len(caplog.records) == 2


def test_failures_reported_on_every_change_of_the_count_alone() -> None:
    counts: list[tuple[str, int]] = []
    clock = Clock()
    b = CircuitBreaker(
        "dest",
        threshold=3,
        cooldown=10,
        clock=clock,
        on_failures=lambda br: counts.append((br.state, br.failures)),
    )
    b.failed()
    b.failed()
    b.succeeded()
    b.succeeded()  # nothing changed: nothing reported
    for _ in range(3):
        b.failed()  # the third opens: a change of state, reported by on_change only
    b.failed()  # a job already under way when it opened
    assert counts == [(CLOSED, 1), (CLOSED, 2), (CLOSED, 0), (CLOSED, 1), (CLOSED, 2), (OPEN, 4)]


def test_a_late_release_from_a_replaced_probe_does_not_admit_a_second_probe() -> None:
    """A probe that outlived its lease was replaced; when it finally ends on a local
    error, the probe now in flight stays the only one."""
    b, clock, _ = make(threshold=1, cooldown=10, probe_lease=60)

    def classify(exc: Exception) -> str:
        return "other"

    b.failed()
    clock.now += 10
    silent = b.guard(classify)
    silent.__enter__()  # the first probe, which hangs
    clock.now += 60
    current = b.guard(classify)
    current.__enter__()  # its lease is over: the second probe
    # The local error propagates (__exit__ does not swallow it).
    assert not silent.__exit__(ValueError, ValueError("a local error, at last"), None)
    assert b.admit() is not None  # the second probe is still the only one
    assert not current.__exit__(ValueError, ValueError("local"), None)
    assert b.admit() is None  # the current probe handed its turn back
    assert b.state == HALF_OPEN


def test_a_release_while_closed_leaves_a_later_probe_alone() -> None:
    b, clock, _ = make(threshold=1, cooldown=10)

    def classify(exc: Exception) -> str:
        return "other"

    early = b.guard(classify)
    early.__enter__()  # admitted while closed
    b.failed()  # another job finds the outage
    clock.now += 10
    assert b.admit() is None  # the probe
    assert not early.__exit__(ValueError, ValueError("local"), None)
    assert b.admit() is not None


def test_breaker_for_applies_changed_settings() -> None:
    b = _breaker.breaker_for("amqp://u@h/", BreakerSettings(threshold=5, cooldown=30))
    _breaker.breaker_for("amqp://u@h/", BreakerSettings(threshold=2, cooldown=3))
    assert (b.threshold, b.cooldown) == (2, 3)
