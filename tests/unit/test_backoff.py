import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgqueue._backoff import BASE_SECONDS, CAP_SECONDS, FACTOR, JITTER, backoff_seconds


class Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def nominal(attempt: int) -> float:
    return min(CAP_SECONDS, BASE_SECONDS * FACTOR ** (attempt - 1))


@given(attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_delay_stays_within_jitter_bounds(attempt: int, seed: int) -> None:
    delay = backoff_seconds(attempt, rng=random.Random(seed))
    d = nominal(min(attempt, 64))  # the cap is reached long before
    assert d * (1 - JITTER) <= delay <= d * (1 + JITTER)


@given(attempt=st.integers(1, 200))
def test_nominal_delay_grows_monotonically_to_the_cap(attempt: int) -> None:
    mid = Fixed(0.5)  # u = 0: no jitter
    a = backoff_seconds(attempt, rng=mid)
    b = backoff_seconds(attempt + 1, rng=mid)
    assert a <= b <= CAP_SECONDS


def test_schedule_doubles_from_the_base() -> None:
    mid = Fixed(0.5)
    assert [backoff_seconds(n, rng=mid) for n in (1, 2, 3, 4)] == [15.0, 30.0, 60.0, 120.0]
    assert backoff_seconds(50, rng=mid) == CAP_SECONDS


def test_jitter_reaches_both_ends() -> None:
    assert backoff_seconds(1, rng=Fixed(0.0)) == pytest.approx(15.0 * (1 - JITTER))
    assert backoff_seconds(1, rng=Fixed(1.0)) == pytest.approx(15.0 * (1 + JITTER))


def test_huge_attempts_do_not_overflow() -> None:
    assert backoff_seconds(10**9, rng=Fixed(0.5)) == CAP_SECONDS


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff_seconds(attempt)
