"""W2's drain clock (tests.bench.drain) on simulated drains: a clock that only the sleeps
and the polls move, jobs done in batches after the workers' start-up, at a steady rate
or one that ramps up."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from tests.bench import drain
from tests.bench.drain import FINE, PROBE, next_poll

POLL = 0.001  # what one count costs, half before its snapshot and half after


def steady(start: float, rate: float) -> Callable[[float], float]:
    """Jobs done by ``t``: none until ``start``, then ``rate`` a second."""
    return lambda t: max(0.0, t - start) * rate


def ramp(start: float, rate: float, over: float) -> Callable[[float], float]:
    """As ``steady``, but the rate grows from 0 to ``rate`` over ``over`` seconds (workers
    and their connections warming up one by one)."""

    def done(t: float) -> float:
        x = max(0.0, t - start)
        return rate * x * x / (2 * over) if x < over else rate * (x - over / 2)

    return done


def step(start: float, slow: float, until: float, fast: float) -> Callable[[float], float]:
    """As ``steady`` at ``slow`` a second until ``until``, then at ``fast`` (a second
    worker process that started late): the rate since the first job done stays under
    a third of the rate at the end."""

    def done(t: float) -> float:
        return max(0.0, min(t, until) - start) * slow + max(0.0, t - until) * fast

    return done


class Sim:
    def __init__(self, n: int, batch: int, done: Callable[[float], float]) -> None:
        self.n, self.batch, self.done = n, batch, done
        self.t = 0.0
        self.polls = 0
        self.checked: list[int] = []
        self.snapshots: list[tuple[float, int]] = []  # (time, left) of each poll
        lo, hi = 0.0, 100.0  # when the last job is done
        while hi - lo > 1e-9:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.left(mid) == 0 else (mid, hi)
        self.last = hi

    def left(self, t: float) -> int:
        return max(0, self.n - self.batch * math.floor(self.done(t) / self.batch + 1e-9))

    def count(self) -> int:
        self.polls += 1
        self.t += POLL / 2
        left = self.left(self.t)
        self.snapshots.append((self.t, left))
        self.t += POLL / 2
        return left

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.t += seconds

    def check(self, left: int, now: float) -> None:
        self.checked.append(left)

    def wait(self) -> drain.Drain:
        return drain.wait(
            self.count, self.n, 0.0, check=self.check, clock=lambda: self.t, sleep=self.sleep
        )


def grid_end(last: float, interval: float = 0.2) -> float:
    """The end of PEERS.md's first poll after ``last``: polls start at 0 and ``interval``
    after each one's end."""
    start = 0.0
    while start + POLL / 2 < last:
        start += POLL + interval
    return start + POLL


@pytest.mark.parametrize(
    ("n", "batch", "done"),
    [
        (30_000, 100, steady(0.20, 25_000)),  # W2 1 x 100: the last job at 1.4 s
        (30_000, 10, steady(0.19, 10_000)),  # W2 1 x 10: at 3.19 s
        (3_000, 10, steady(0.15, 15_000)),  # --quick: at 0.35 s, one grid poll after the first
        (30_000, 100, ramp(0.19, 30_000, 0.8)),  # a slow warm-up: at 1.59 s
        (3_000, 10, ramp(0.15, 20_000, 0.25)),  # the drain ends as it reaches full speed
        (30_000, 10, step(0.2, 1_000, 1.2, 60_000)),  # at 1.683 s
    ],
)
def test_both_clocks_stop_where_they_should(n, batch, done):
    sim = Sim(n, batch, done)
    end, exact = sim.wait()
    assert end == pytest.approx(grid_end(sim.last), abs=1e-9)
    assert sim.last - POLL / 2 <= exact <= sim.last + FINE + POLL
    # Far from the end the grid alone polls: a few extra polls near it, not a busy loop.
    assert sim.polls <= math.ceil(sim.last / 0.2) + 20


def test_both_clocks_on_many_drains():
    # Drains of every length and speed: an extra poll that ran into a grid poll would
    # shift the grid (end), one planned from too low a rate would stop late (exact).
    # Jobs done in batches: the last batch's wait is half its time at the rate seen, so
    # the second clock is within that or FINE, whichever is longer (a W2 batch of 100 at
    # 25,000/s takes 4 ms); a drain that ends within PROBE of the first poll that saw a
    # job done, before a rate was measured, within PROBE; one that no poll saw under way,
    # on the grid.
    rng = random.Random(6)
    for _ in range(300):
        rate, batch = rng.uniform(3_000, 40_000), rng.choice((1, 10, 100))
        sim = Sim(rng.randrange(1_000, 30_000, 100), batch, steady(rng.uniform(0.1, 0.3), rate))
        end, exact = sim.wait()
        assert end == pytest.approx(grid_end(sim.last), abs=1e-9)
        seen = next(t for t, left in sim.snapshots if left < sim.n)
        if sim.left(seen) == 0:
            assert exact == pytest.approx(end - POLL, abs=1e-9)
        elif sim.last < seen + PROBE + POLL:
            assert exact <= seen + PROBE + POLL
        else:
            assert exact <= sim.last + max(FINE, batch / rate / 2) + POLL


def test_a_drain_between_two_grid_polls_reads_the_grid_on_both_clocks():
    # No job done at the poll at 0.2 s, none left at the one at 0.4: no rate was seen, so
    # the second clock is that poll's start.
    sim = Sim(3_000, 10, steady(0.21, 20_000))
    end, exact = sim.wait()
    assert end == pytest.approx(grid_end(sim.last), abs=1e-9)
    assert exact == pytest.approx(end - POLL, abs=1e-9)


def test_nothing_is_checked_once_none_is_left():
    sim = Sim(3_000, 10, steady(0.15, 15_000))
    sim.wait()
    assert sim.checked and 0 not in sim.checked


def test_a_check_that_gives_up_ends_the_wait():
    sim = Sim(3_000, 10, steady(0.15, 1_000))  # 3 s to drain: the bound comes first

    def bound(left: int, now: float) -> None:
        if now > 0.3:
            raise TimeoutError(left)

    with pytest.raises(TimeoutError):
        drain.wait(sim.count, sim.n, 0.0, check=bound, clock=lambda: sim.t, sleep=sim.sleep)
    assert 0.3 < sim.t < 0.3 + 0.2 + POLL


def test_next_poll_is_half_the_time_left_at_the_rate_seen():
    # No rate: the plain interval.
    assert next_poll(0.0, 30_000, 0.2) == 0.2
    # 20,000 left at 20,000/s take 1 s: the poll waits the interval.
    assert next_poll(20_000, 20_000, 0.2) == 0.2
    # 1,000 left at 20,000/s take 0.05 s: half of that.
    assert next_poll(20_000, 1_000, 0.2) == pytest.approx(0.025)
    # A few left: never closer than the fine interval.
    assert next_poll(20_000, 3, 0.2, 0.005) == 0.005
