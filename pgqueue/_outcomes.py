"""From what ``perform`` did to the job's next state: the outcome policy, as data.

``perform`` returns or raises; the executor wraps that in ``Success`` or ``Failure``;
``decide`` (pure: no clock, no database) turns it into a ``Transition``; the acker
applies batches of transitions with one guarded statement. Keeping the decision here
means every rule of DESIGN §3 is tested without a database.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from ._job import Job

# A traceback is for a person reading one failed attempt; 20 attempts of a deep stack
# must not bloat the row, so each one is kept to its last part.
MAX_TRACEBACK_CHARS = 8000
MAX_MESSAGE_CHARS = 2000


class Snooze(Exception):
    """Return or raise to run the job again in ``seconds`` without using up an attempt."""

    def __init__(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise ValueError(f"Snooze needs a number of seconds >= 0, got {seconds!r}")
        super().__init__(f"snoozed for {seconds:g} s")
        self.seconds = float(seconds)


class Cancel(Exception):
    """Return or raise to stop the job for good: it ends ``cancelled``."""

    def __init__(self, reason: str = "cancelled by the job") -> None:
        super().__init__(reason)
        self.reason = reason


class Discard(Exception):
    """Return or raise to send the job to the dead letter (``discarded``) now."""

    def __init__(self, reason: str = "discarded by the job") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True, frozen=True)
class Success:
    value: Any = None


@dataclass(slots=True, frozen=True)
class Failure:
    error: BaseException
    traceback: str = ""

    @classmethod
    def capture(cls, error: BaseException) -> Failure:
        text = "".join(traceback.format_exception(error))
        return cls(error, text[-MAX_TRACEBACK_CHARS:])


class Transition(NamedTuple):
    """The next state of one attempt, applied only if the job is still ``executing``
    with this ``attempt`` (so a stale result can never overwrite a newer run).

    A named tuple: immutable like a frozen dataclass, and built in a quarter of its time
    (0.3 us against 1.2; one is built for every job a worker runs).
    """

    id: int
    attempt: int
    state: str
    delay: float | None = None  # seconds from now until the job is due again
    error: dict[str, Any] | None = None  # appended to the row's errors
    meta: dict[str, Any] | None = None  # merged into the row's meta
    extra_attempts: int = 0  # added to max_attempts (a snooze keeps its budget)

    @property
    def plain_completion(self) -> bool:
        """Completed with nothing else to write (the ack sends only id and attempt)."""
        return (
            self.state == "completed" and self.delay is None and self.error is None
            and self.meta is None and not self.extra_attempts
        )  # fmt: skip


def _text(value: str, limit: int, *, keep_end: bool = False) -> str:
    """``value`` cut to ``limit`` characters, without NUL (text and jsonb cannot hold it)."""
    value = value.replace("\x00", "\\0")
    return value[-limit:] if keep_end else value[:limit]


def _describe(err: BaseException) -> str:
    try:
        return str(err)
    except Exception:  # an exception whose __str__ itself fails
        return f"<{type(err).__qualname__}: its message could not be rendered>"


def unreadable(job_id: int, attempt: int, reason: BaseException, at: datetime) -> Transition:
    """A claimed row this client cannot read (a timestamp past Python's range, JSON
    nested deeper than its parser goes, written by SQL or another language): discarded,
    with why. No attempt could ever run it, and left available it would be claimed
    first again and again, stalling its queue."""
    message = f"the claimed row cannot be read: {_describe(reason)}"
    return Transition(job_id, attempt, "discarded", error=_entry(attempt, at, reason, message))


def error_entry(job: Job, failure: Failure, at: datetime) -> dict[str, Any]:
    err = failure.error
    traceback = _text(failure.traceback, MAX_TRACEBACK_CHARS, keep_end=True)
    return _entry(job.attempt, at, err, _describe(err), traceback)


def _entry(
    attempt: int, at: datetime, err: BaseException, message: str, traceback: str = ""
) -> dict[str, Any]:
    """One element of a row's ``errors``."""
    return {
        "attempt": attempt,
        "at": at.isoformat(),
        "error": type(err).__qualname__,
        "message": _text(message, MAX_MESSAGE_CHARS),
        "traceback": traceback,
    }


def refused_error(t: Transition, reason: BaseException) -> dict[str, Any]:
    """The error entry written when the database refused a transition's own."""
    assert t.error is not None
    return {
        "attempt": t.attempt,
        "at": t.error.get("at"),
        "error": str(t.error.get("error", "Error"))[:200],
        "message": f"the error of this attempt could not be stored ({type(reason).__name__})",
        "traceback": "",
    }


def completed(job: Job, outcome: Success | Failure) -> Transition | None:
    """``decide``'s answer without its clock and backoff when ``perform`` returned a
    value that is no exception (so no Snooze, Cancel or Discard): completed. None when
    ``decide`` must look. The path of nearly every job, which then builds neither."""
    if type(outcome) is Success and not isinstance(outcome.value, BaseException):
        return Transition(job.id, job.attempt, "completed", None, None, job.meta_updates)
    return None


def decide(
    job: Job,
    outcome: Success | Failure,
    *,
    now: datetime,
    backoff: Callable[[Job], float],
) -> Transition:
    """The transition for one finished attempt of ``job``."""
    signal = outcome.value if isinstance(outcome, Success) else outcome.error
    meta = job.meta_updates
    if isinstance(signal, Snooze):
        return Transition(job.id, job.attempt, "scheduled", signal.seconds, None, meta, 1)
    if isinstance(signal, Cancel | Discard):
        failure = outcome if isinstance(outcome, Failure) else Failure(signal)
        state = "cancelled" if isinstance(signal, Cancel) else "discarded"
        return Transition(job.id, job.attempt, state, None, error_entry(job, failure, now), meta)
    if isinstance(outcome, Success):
        return Transition(job.id, job.attempt, "completed", None, None, meta)
    entry = error_entry(job, outcome, now)
    if job.attempt >= job.max_attempts:
        return Transition(job.id, job.attempt, "discarded", None, entry, meta)
    delay = backoff(job)
    if not (isinstance(delay, int | float) and math.isfinite(delay)) or delay < 0:
        delay = 0.0
    return Transition(job.id, job.attempt, "retryable", float(delay), entry, meta)
