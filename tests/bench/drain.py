"""W2's drain clock: when the last of ``n`` jobs was done, read two ways.

PEERS.md's clock is the end of the first poll that sees no unfinished job, polls
``interval`` (0.2 s) apart: it stops up to ``interval`` after the last completion (0.19 s
late on a 1.05 s drain of W2 1 x 100). Extra polls between those close in on the end at
the rate seen since the first completion, and the time just before the first poll of
either kind that sees none left is a second clock, within ``fine`` of the last completion
(that poll's snapshot is taken after it).

The loop takes the count, the clock and the sleep as arguments, so that a simulated
drain tests it to the millisecond; ``System.wait_drained`` runs it on a real connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

# The extra polls' shortest interval: how late the second clock may be, plus one poll.
FINE = 0.005
# After the first poll that sees a job done, the next comes this soon, to measure the
# rate from there: the rate since the start counts the workers' start-up (~0.2 s of W2)
# and, on a short drain, would put the next poll after the end.
PROBE = 0.02


class Drain(NamedTuple):
    end: float  # PEERS.md's clock: the end of the grid poll that saw none left
    exact: float  # just before the first poll of either kind that saw none left


def next_poll(done: int, left: int, elapsed: float, interval: float, fine: float = FINE) -> float:
    """Seconds until the next extra poll: half the time the ``left`` jobs would take at
    ``done`` jobs in ``elapsed`` seconds, between ``fine`` and ``interval``.

    Far from the end no extra poll comes (each poll is a count that takes the system's
    CPU); near it they close in on the last completion. Without progress there is no
    rate: none either.
    """
    if done <= 0 or elapsed <= 0:
        return interval
    return max(fine, min(interval, left * elapsed / done / 2))


def wait(
    count: Callable[[], int],
    n: int,
    t0: float,
    *,
    check: Callable[[int, float], None],
    interval: float = 0.2,
    fine: float = FINE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Drain:
    """Poll ``count`` (the unfinished jobs of ``n``) until it reads 0 on PEERS.md's grid.

    ``check(left, now)`` runs after each poll that still sees jobs left and raises to give
    up (a bound, a dead worker); once none is left nothing can fail any more, and only the
    grid poll that ends PEERS.md's clock remains.
    """
    due = t0  # the next grid poll: one at once, then ``interval`` after each ends
    exact: float | None = None
    since: tuple[float, int] | None = None  # (end, left) of the first poll with progress
    while True:
        before = clock()
        left = count()
        now = clock()
        if left == 0:
            exact = before if exact is None else exact
            if before >= due:
                return Drain(now, exact)
            sleep(max(0.0, due - clock()))
            continue
        check(left, now)
        if before >= due:
            due = now + interval
        if since is None and left < n:
            since = (now, left)
            extra = min(interval, PROBE)
        elif since is None:
            extra = interval
        else:
            extra = next_poll(since[1] - left, left, now - since[0], interval, fine)
        sleep(max(0.0, min(due - clock(), extra)))
