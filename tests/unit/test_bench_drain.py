"""W2's drain clock (tests.bench.drain) on simulated drains: a clock that only the sleeps
and the polls move, jobs done in batches at a steady rate after the workers' start-up."""

from __future__ import annotations

import math

import pytest

from tests.bench import drain
from tests.bench.drain import FINE, next_poll

POLL = 0.001  # what one count costs, half before its snapshot and half after


class Sim:
    def __init__(self, n: int, start: float, rate: float, batch: int) -> None:
        self.n, self.start, self.rate, self.batch = n, start, rate, batch
        self.t = 0.0
        self.polls = 0
        self.checked: list[int] = []

    @property
    def last(self) -> float:
        """When the last job is done."""
        return self.start + self.n / self.rate

    def left(self, t: float) -> int:
        done = max(0.0, t - self.start) * self.rate
        return max(0, self.n - self.batch * math.floor(done / self.batch + 1e-9))

    def count(self) -> int:
        self.polls += 1
        self.t += POLL / 2
        left = self.left(self.t)
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
    ("n", "start", "rate", "batch"),
    [
        (30_000, 0.20, 25_000, 100),  # W2 1 x 100: the last job at 1.4 s
        (30_000, 0.19, 10_000, 10),  # W2 1 x 10: at 3.19 s
        (3_000, 0.15, 15_000, 10),  # --quick: at 0.35 s, one grid poll after the first job
    ],
)
def test_both_clocks_stop_where_they_should(n, start, rate, batch):
    sim = Sim(n, start, rate, batch)
    end, exact = sim.wait()
    assert end == pytest.approx(grid_end(sim.last))
    assert sim.last - POLL / 2 <= exact <= sim.last + FINE + POLL
    # Far from the end the grid alone polls: a few extra polls near it, not a busy loop.
    assert sim.polls <= math.ceil(sim.last / 0.2) + 16


def test_nothing_is_checked_once_none_is_left():
    sim = Sim(3_000, 0.15, 15_000, 10)
    sim.wait()
    assert sim.checked and 0 not in sim.checked


def test_a_check_that_gives_up_ends_the_wait():
    sim = Sim(3_000, 0.15, 1_000, 10)  # 3 s to drain: the bound comes first

    def bound(left: int, now: float) -> None:
        if now > 0.3:
            raise TimeoutError(left)

    with pytest.raises(TimeoutError):
        drain.wait(sim.count, sim.n, 0.0, check=bound, clock=lambda: sim.t, sleep=sim.sleep)
    assert 0.3 < sim.t < 0.3 + 0.2 + POLL


def test_next_poll_is_half_the_time_left_at_the_rate_seen():
    # No progress: no rate, the plain interval.
    assert next_poll(0, 30_000, 0.5, 0.2) == 0.2
    # 10,000 done in 0.5 s: the other 20,000 take 1 s, so the poll waits the interval.
    assert next_poll(10_000, 20_000, 0.5, 0.2) == 0.2
    # 1,000 left at 20,000/s take 0.05 s: half of that.
    assert next_poll(29_000, 1_000, 1.45, 0.2) == pytest.approx(0.025)
    # A few left: never closer than the fine interval.
    assert next_poll(29_997, 3, 1.5, 0.2, 0.005) == 0.005
