"""The default retry delay: exponential growth, a cap, and jitter.

Pure: the attempt number and a random source in, seconds out. The formula is written in
the README; a worker overrides it by defining ``backoff(self, job)``.

    delay(attempt) = min(cap, base * factor ** (attempt - 1)) * (1 + jitter * u),  u ~ U[-1, 1]

Jitter spreads the retries of jobs that failed together (a broker outage fails hundreds
at once) so they do not all come back in the same second.
"""

from __future__ import annotations

import random
from typing import Protocol

BASE_SECONDS = 15.0
FACTOR = 2.0
CAP_SECONDS = 6 * 3600.0
JITTER = 0.2


class RandomSource(Protocol):
    def random(self) -> float: ...


def backoff_seconds(
    attempt: int,
    *,
    base: float = BASE_SECONDS,
    factor: float = FACTOR,
    cap: float = CAP_SECONDS,
    jitter: float = JITTER,
    rng: RandomSource = random,
) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based)."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    # Cap the exponent before computing so huge attempt numbers never overflow a float.
    exponent = min(attempt - 1, 1024)
    try:
        raw = base * factor**exponent
    except OverflowError:
        raw = cap
    delay = min(cap, raw)
    u = rng.random() * 2.0 - 1.0
    return delay * (1.0 + jitter * u)
