"""Unique-job keys: which enqueues count as duplicates of each other.

Pure: a key is a digest of the worker, the queue (optional), the chosen args and the
period window the enqueue falls in. The database enforces it with a unique index over
the key while the job is in one of the chosen states, so concurrent inserts race-free
collapse to one row.

A period is a window aligned to the Unix epoch (``floor(now / period)``): two enqueues in
the same window are duplicates. ``period=None`` means as long as the job row exists in
one of the chosen states.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._errors import ConfigError
from ._states import STATES

# Every state but the two that mean "this did not happen": a discarded or cancelled job
# does not stop the same work from being enqueued again.
DEFAULT_STATES: tuple[str, ...] = (
    "scheduled",
    "available",
    "executing",
    "retryable",
    "completed",
)


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
            isinstance(self.period, int | float) and math.isfinite(self.period) and self.period > 0
        ):
            raise ConfigError(
                f"Unique(period=...) must be a positive number or None, got {self.period!r}"
            )
        bad = [s for s in self.states if s not in STATES]
        if bad or not self.states:
            raise ConfigError(
                f"Unique(states=...) must be a non-empty subset of {', '.join(STATES)}; got {list(self.states)!r}"
            )
        if self.keys is not None and (
            isinstance(self.keys, str) or not all(isinstance(k, str) for k in self.keys)
        ):
            raise ConfigError(f"Unique(keys=...) must be a list of args keys, got {self.keys!r}")


def unique_key(
    unique: Unique, *, worker: str, queue: str, args: Mapping[str, Any], now: datetime
) -> str:
    """The digest two duplicate enqueues share."""
    chosen = dict(args) if unique.keys is None else {k: args.get(k) for k in unique.keys}
    window = None if unique.period is None else math.floor(now.timestamp() / unique.period)
    material = json.dumps(
        [worker, queue if unique.by_queue else None, chosen, unique.period, window],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def states_literal(states: Sequence[str]) -> str:
    """The states as a Postgres array literal (the values are fixed enum names)."""
    return "{" + ",".join(states) + "}"
