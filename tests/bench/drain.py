"""W2's drain clock: when the last of ``n`` jobs was done, read two ways.

PEERS.md's clock is the end of the first poll that sees no unfinished job, polls
``interval`` (0.2 s) apart: it stops up to ``interval`` after the last completion (0.19 s
late on a 1.05 s drain of W2 1 x 100). Extra polls between those close in on the end at
the rate seen (the higher of the rate since the first poll that saw a job done and the
rate since the poll before), and the time just before the first poll of either kind
that sees none left is a second clock. It is within ``fine`` of the last completion
(that poll's snapshot is taken after it), or of half the time the last batch of
completions took at the rate seen if that is longer; a drain that ends within PROBE
of the first poll that saw it under way reads it at most PROBE late, and one that no
poll saw under way reads it at the start of the grid poll that ends PEERS.md's clock.

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
# and, on a short drain, would put the next poll after the end. A drain that ends
# before this probe reads the second clock at it, up to PROBE late.
PROBE = 0.02


class Drain(NamedTuple):
    end: float  # PEERS.md's clock: the end of the grid poll that saw none left
    exact: float  # just before the first poll of either kind that saw none left


def next_poll(rate: float, left: int, interval: float, fine: float = FINE) -> float:
    """Seconds until the next extra poll: half the time the ``left`` jobs would take at
    ``rate`` jobs/s, between ``fine`` and ``interval``.

    Far from the end no extra poll comes (each poll is a count that takes the system's
    CPU); near it they close in on the last completion. Without a rate: none either.
    """
    if rate <= 0:
        return interval
    return max(fine, min(interval, left / rate / 2))


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
    last = (t0, n)  # (end, left) of the poll before
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
            # Overestimating the rate costs a poll; underestimating it, while the workers
            # still speed up, would put the next poll after the end.
            rate = max(_rate(since, now, left), _rate(last, now, left))
            extra = next_poll(rate, left, interval, fine)
        last = (now, left)
        to_grid = due - clock()
        # The grid poll if it comes first; an extra poll no later than planned, but at least
        # ``fine`` before the grid poll, which it would delay if it ran into it.
        sleep(max(0.0, to_grid if to_grid <= extra else min(extra, to_grid - fine)))


def _rate(start: tuple[float, int], now: float, left: int) -> float:
    """Jobs/s done between ``start`` (a poll's end and the jobs it saw left) and now."""
    return (start[1] - left) / (now - start[0]) if now > start[0] else 0.0
