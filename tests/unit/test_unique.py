from datetime import UTC, datetime, timedelta

import pytest

from pgqueue import ConfigError, Unique
from pgqueue._unique import unique_key

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def key(u: Unique, args: dict, *, worker: str = "w", queue: str = "q", now: datetime = T0) -> str:
    return unique_key(u, worker=worker, queue=queue, args=args, now=now)


def test_same_job_same_key_regardless_of_arg_order() -> None:
    u = Unique()
    assert key(u, {"a": 1, "b": 2}) == key(u, {"b": 2, "a": 1})


def test_different_args_worker_or_queue_differ() -> None:
    u = Unique()
    base = key(u, {"a": 1})
    assert base != key(u, {"a": 2})
    assert base != key(u, {"a": 1}, worker="other")
    assert base != key(u, {"a": 1}, queue="other")


def test_keys_pick_the_identifying_args() -> None:
    u = Unique(keys=["id"])
    assert key(u, {"id": 1, "noise": "x"}) == key(u, {"id": 1, "noise": "y"})
    assert key(u, {"id": 1}) != key(u, {"id": 2})


def test_by_queue_false_ignores_the_queue() -> None:
    u = Unique(by_queue=False)
    assert key(u, {"a": 1}, queue="x") == key(u, {"a": 1}, queue="y")


def test_period_windows_are_aligned_to_the_epoch() -> None:
    u = Unique(period=60)
    start = T0  # 12:00:00 is a window boundary
    assert key(u, {}, now=start) == key(u, {}, now=start + timedelta(seconds=59.9))
    assert key(u, {}, now=start) != key(u, {}, now=start + timedelta(seconds=60))


def test_no_period_means_forever() -> None:
    u = Unique(period=None)
    assert key(u, {}, now=T0) == key(u, {}, now=T0 + timedelta(days=400))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"period": 0},
        {"period": -1},
        {"period": float("inf")},
        {"states": ["nope"]},
        {"states": []},
        {"keys": "id"},
    ],
)
def test_bad_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Unique(**kwargs)
