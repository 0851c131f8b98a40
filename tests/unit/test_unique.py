import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgqueue import ConfigError, Unique
from pgqueue._unique import STRETCH, period_ms, unique_base, unique_key


def key(u: Unique, args: dict, *, worker: str = "w", queue: str = "q") -> str:
    return unique_key(u, worker=worker, queue=queue, args=args)


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


def test_the_key_does_not_depend_on_the_period() -> None:
    # The window is placed by the database at insert time, not baked into the key.
    assert key(Unique(period=60), {"a": 1}) == key(Unique(period=None), {"a": 1})


def test_period_in_milliseconds() -> None:
    assert period_ms(Unique(period=60)) == 60_000
    assert period_ms(Unique(period=0.0001)) == 1
    assert period_ms(Unique(period=None)) is None


@given(a=st.text(max_size=20), b=st.text(max_size=20))
def test_distinct_keys_get_disjoint_stretches(a: str, b: str) -> None:
    ka, kb = key(Unique(), {"x": a}), key(Unique(), {"x": b})
    base_a, base_b = int(unique_base(ka)), int(unique_base(kb))
    assert base_a % STRETCH == 0
    if ka != kb:
        assert abs(base_a - base_b) >= STRETCH


@pytest.mark.parametrize(
    "kwargs",
    [
        {"period": 0},
        {"period": -1},
        {"period": float("inf")},
        {"states": ["nope"]},
        {"states": []},
        {"states": ["available", "scheduled"]},
        {"keys": "id"},
    ],
)
def test_bad_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Unique(**kwargs)
