from datetime import UTC, datetime

import pytest

from pgqueue import Cancel, Discard, Job, Snooze
from pgqueue._outcomes import Failure, Success, completed, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job(attempt: int = 1, max_attempts: int = 3) -> Job:
    return Job(id=7, worker="w", attempt=attempt, max_attempts=max_attempts)


def fail(exc: BaseException) -> Failure:
    try:
        raise exc
    except BaseException as e:
        return Failure.capture(e)


def go(j: Job, outcome: Success | Failure):
    return decide(j, outcome, now=NOW, backoff=lambda _: 42.0)


def test_return_completes() -> None:
    t = go(job(), Success("value"))
    assert (t.id, t.attempt, t.state, t.delay, t.error, t.extra_attempts) == (
        7,
        1,
        "completed",
        None,
        None,
        0,
    )


def test_raise_retries_with_backoff_and_records_the_error() -> None:
    t = go(job(attempt=2), fail(RuntimeError("boom")))
    assert t.state == "retryable" and t.delay == 42.0
    assert t.error is not None
    assert t.error["attempt"] == 2
    assert t.error["error"] == "RuntimeError"
    assert t.error["message"] == "boom"
    assert t.error["at"] == NOW.isoformat()
    assert "Traceback" in t.error["traceback"] and "boom" in t.error["traceback"]


def test_raise_on_last_attempt_discards() -> None:
    t = go(job(attempt=3, max_attempts=3), fail(RuntimeError("boom")))
    assert t.state == "discarded" and t.delay is None and t.error["error"] == "RuntimeError"


@pytest.mark.parametrize("raised", [False, True])
def test_snooze_reschedules_and_keeps_the_attempt_budget(raised: bool) -> None:
    outcome = fail(Snooze(30)) if raised else Success(Snooze(30))
    t = go(job(attempt=3, max_attempts=3), outcome)
    assert (t.state, t.delay, t.extra_attempts, t.error) == ("scheduled", 30.0, 1, None)


@pytest.mark.parametrize("raised", [False, True])
def test_cancel_ends_cancelled_with_its_reason(raised: bool) -> None:
    outcome = fail(Cancel("no longer needed")) if raised else Success(Cancel("no longer needed"))
    t = go(job(), outcome)
    assert (
        t.state == "cancelled"
        and t.error["error"] == "Cancel"
        and t.error["message"] == "no longer needed"
    )


@pytest.mark.parametrize("raised", [False, True])
def test_discard_goes_to_the_dead_letter_now(raised: bool) -> None:
    outcome = fail(Discard("bad input")) if raised else Success(Discard("bad input"))
    t = go(job(attempt=1, max_attempts=20), outcome)
    assert t.state == "discarded" and t.error["message"] == "bad input"


def test_meta_updates_travel_with_any_outcome() -> None:
    j = job()
    j.update_meta({"sha256": "abc"})
    assert go(j, Success()).meta == {"sha256": "abc"}
    assert go(j, fail(RuntimeError())).meta == {"sha256": "abc"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -5.0])
def test_a_nonsense_backoff_means_retry_now(bad: float) -> None:
    t = decide(job(), fail(RuntimeError()), now=NOW, backoff=lambda _: bad)
    assert t.state == "retryable" and t.delay == 0.0


@pytest.mark.parametrize("bad", [-1, float("nan"), "10", True])
def test_snooze_rejects_nonsense(bad: object) -> None:
    with pytest.raises(ValueError):
        Snooze(bad)  # type: ignore[arg-type]


def test_long_messages_and_tracebacks_are_trimmed() -> None:
    t = go(job(), fail(RuntimeError("x" * 10_000)))
    assert len(t.error["message"]) == 2000
    assert len(t.error["traceback"]) <= 8000


@pytest.mark.parametrize(
    "outcome",
    [Success(None), Success({"a": 1}), Success(0), Success(ValueError("returned")),
     Success(Snooze(5)), Success(Cancel()), Success(Discard()), Failure(ValueError("x")),
     Failure(Snooze(5)), Failure(Cancel())],
)  # fmt: skip
def test_completed_is_decide_when_it_answers(outcome: Success | Failure) -> None:
    j = job()
    j.update_meta({"k": 1})
    fast = completed(j, outcome)
    slow = decide(j, outcome, now=datetime.now(UTC), backoff=lambda _: 1.0)
    plain = isinstance(outcome, Success) and not isinstance(outcome.value, BaseException)
    assert fast == (slow if plain else None)
