import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgqueue import ConfigError, Unique
from pgqueue._unique import period_ms, unique_key


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


@given(args=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3))
def test_a_key_is_64_lowercase_hex_digits(args: dict) -> None:
    # The database reads the key's first 30 digits as two 60-bit pieces, the points its
    # exclusion constraint compares (migrations/0007): anything else would fail the insert.
    k = key(Unique(), args)
    assert len(k) == 64 and set(k) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"period": 0},
        {"period": -1},
        {"period": float("inf")},
        {"period": float("nan")},
        {"period": 1e12 + 1},
        {"states": ["nope"]},
        {"states": []},
        {"states": ["available", "scheduled"]},
        {"keys": "id"},
    ],
)
def test_bad_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Unique(**kwargs)
