import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgqueue import ConfigError, Cron
from pgqueue._cron import due_slots, slots_between

T = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)


def test_slots_between_is_half_open_and_ordered() -> None:
    slots = slots_between("* * * * *", "UTC", T - timedelta(minutes=3), T)
    assert slots == [
        datetime(2026, 1, 1, 11, 58, tzinfo=UTC),
        datetime(2026, 1, 1, 11, 59, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    ]
    exact = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert slots_between("* * * * *", "UTC", exact, exact) == []
    assert slots_between("* * * * *", "UTC", exact - timedelta(seconds=1), exact) == [exact]


def test_seconds_field_and_time_zones() -> None:
    assert len(slots_between("* * * * * */2", "UTC", T, T + timedelta(seconds=10))) == 5
    berlin = slots_between(
        "0 3 * * *",
        "Europe/Berlin",
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 6, 2, tzinfo=UTC),
    )
    assert [s.astimezone(UTC).hour for s in berlin] == [1]  # 03:00 CEST is 01:00 UTC


def test_a_new_entry_fires_only_its_latest_recent_slot() -> None:
    entry = Cron("* * * * *", "w")
    assert due_slots(entry, T, None) == [datetime(2026, 1, 1, 12, 0, tzinfo=UTC)]
    daily = Cron("0 3 * * *", "w")
    assert due_slots(daily, T, None) == []  # 03:00 was nine hours ago: not now


def test_after_a_leader_change_missed_slots_are_caught_up_within_grace() -> None:
    entry = Cron("* * * * *", "w")
    last = datetime(2026, 1, 1, 11, 57, tzinfo=UTC)
    assert [s.minute for s in due_slots(entry, T, last)] == [58, 59, 0]
    long_ago = T - timedelta(hours=2)
    assert len(due_slots(entry, T, long_ago, grace=300)) == 5  # only the grace window


@given(offset=st.integers(0, 3600 * 24), grace=st.integers(1, 3600))
def test_due_slots_are_never_in_the_future_nor_older_than_grace(offset: int, grace: int) -> None:
    now = T + timedelta(seconds=offset)
    for last in (None, now - timedelta(seconds=grace // 2)):
        for slot in due_slots(Cron("*/7 * * * *", "w"), now, last, grace=grace):
            assert now - timedelta(seconds=grace) < slot <= now
            assert last is None or slot > last


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expression": "nope"},
        {"expression": "* * *"},
        {"timezone": "Mars/Olympus"},
        {"queue": "bad queue"},
        {"args": {"x": {1}}},
    ],
)
def test_bad_entries_fail_at_declaration(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Cron(**{"expression": "* * * * *", "worker": "w", **kwargs})


def test_names_default_to_worker_expression_and_args() -> None:
    a = Cron("* * * * *", "w", {"x": 1})
    assert a.name.startswith("w@* * * * *#") and a.name != Cron("* * * * *", "w", {"x": 2}).name


def test_the_grace_window_is_elapsed_time_across_a_dst_change() -> None:
    # 02:10 after the clocks went back in Paris (01:10 UTC): an hour of grace reaches
    # 00:10 UTC. Wall-clock arithmetic would reach an hour further back and catch up a
    # slot older than the grace window.
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    now = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=paris)
    assert now.astimezone(UTC) == datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    entry = Cron("*/30 * * * *", "w.x")
    last = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # 100 minutes before now
    slots = due_slots(entry, now, last, grace=3600)
    assert slots == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    ]
    assert all(now - s <= timedelta(hours=1) for s in slots)


def test_croniter_is_imported_only_when_a_cron_expression_is_read() -> None:
    # Every process that imports pgqueue (web workers, the CLI, a worker without cron
    # entries) would otherwise pay croniter's and dateutil's start-up for nothing.
    probe = (
        "import sys, pgqueue, pgqueue.cli, pgqueue._node, pgqueue._leader\n"
        "assert 'croniter' not in sys.modules, 'imported with pgqueue'\n"
        "pgqueue.Cron('*/5 * * * *', 'w')\n"
        "assert 'croniter' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
