"""Unique-job keys: which enqueues count as duplicates of each other.

Pure: a key is a digest of the worker, the queue (optional) and the chosen args. Two
enqueues of one key are duplicates when the second comes less than ``period`` seconds
after the first (a sliding window) while the first is in one of the chosen states;
``period=None`` means for as long as the first exists in those states. The database
enforces it with an exclusion constraint over the key's digest and the job's window
[now, now + period) (see migrations/0007), so concurrent inserts collapse to one row
race-free.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError
from ._states import STATES

# A job moves among these on its own (retries, snoozes, rescue), so they must all hold
# the key: otherwise a job coming back to one of them could meet a newer duplicate.
LIVE_STATES: tuple[str, ...] = ("scheduled", "available", "executing", "retryable")

# Every state but the two that mean "this did not happen": a discarded or cancelled job
# does not stop the same work from being enqueued again.
DEFAULT_STATES: tuple[str, ...] = (
    "scheduled",
    "available",
    "executing",
    "retryable",
    "completed",
)


# The longest window, in seconds (about 31,700 years): the database adds it, in
# milliseconds, to the time of the enqueue in a bigint. Longer means None.
MAX_PERIOD = 1e12


@dataclass(frozen=True, slots=True)
class Unique:
    """How a worker's jobs are de-duplicated at enqueue time.

    period: seconds of the window, or None for no time limit.
    keys: the args keys that identify a job (None: all of args).
    states: the states in which an existing job blocks a new one.
    by_queue: whether the same args in another queue are a different job.
    """

    period: float | None = 60.0
    keys: Sequence[str] | None = None
    states: Sequence[str] = DEFAULT_STATES
    by_queue: bool = True

    def __post_init__(self) -> None:
        if self.period is not None and not (
            isinstance(self.period, int | float) and 0 < self.period <= MAX_PERIOD
        ):
            raise ConfigError(
                f"Unique(period=...) must be seconds, more than 0 and at most {MAX_PERIOD:.0e},"
                f" or None for no limit; got {self.period!r}"
            )
        bad = [s for s in self.states if s not in STATES]
        missing = [s for s in LIVE_STATES if s not in self.states]
        if bad or missing:
            raise ConfigError(
                f"Unique(states=...) must list {', '.join(LIVE_STATES)} and may add "
                f"completed, discarded, cancelled; got {list(self.states)!r}"
            )
        if self.keys is not None and (
            isinstance(self.keys, str) or not all(isinstance(k, str) for k in self.keys)
        ):
            raise ConfigError(f"Unique(keys=...) must be a list of args keys, got {self.keys!r}")


def unique_key(unique: Unique, *, worker: str, queue: str, args: Mapping[str, Any]) -> str:
    """The digest two duplicate enqueues share."""
    chosen = dict(args) if unique.keys is None else {k: args.get(k) for k in unique.keys}
    material = json.dumps(
        [worker, queue if unique.by_queue else None, chosen],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def period_ms(unique: Unique) -> int | None:
    """The window in milliseconds; None for no time limit (an unbounded window)."""
    return None if unique.period is None else max(1, math.ceil(unique.period * 1000))


def states_literal(states: Sequence[str]) -> str:
    """The states as a Postgres array literal (the values are fixed enum names)."""
    return "{" + ",".join(states) + "}"
