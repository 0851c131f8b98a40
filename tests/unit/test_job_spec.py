import json
from datetime import datetime

import pytest

import pgqueue
from pgqueue import ConfigError, JobSpec


def build(**kwargs):
    return JobSpec.build("w", kwargs.pop("args", {}), **kwargs)


def test_serialises_args_and_meta_once() -> None:
    spec = build(args={"b": 1, "a": [1, 2]}, meta={"m": True}, tags=["x"])
    assert spec.args_json == '{"b":1,"a":[1,2]}'
    assert spec.meta_json == '{"m":true}'
    assert spec.tags == ("x",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"args": {"s": {1, 2}}}, "args must be JSON-serialisable"),
        ({"args": {"x": float("nan")}}, "args must be JSON-serialisable"),
        ({"args": [1, 2]}, "args must be a JSON object"),
        ({"meta": {"o": object()}}, "meta must be JSON-serialisable"),
        ({"queue": "has space"}, "queue must be"),
        ({"queue": ""}, "queue must be"),
        ({"priority": 10}, "priority must be"),
        ({"priority": True}, "priority must be"),
        ({"max_attempts": 0}, "max_attempts must be"),
        ({"tags": "one"}, "tags must be a list"),
        ({"tags": [1]}, "tags must be a list"),
        ({"schedule_in": -1}, "schedule_in must be"),
        ({"schedule_in": float("inf")}, "schedule_in must be"),
        ({"scheduled_at": datetime(2030, 1, 1)}, "timezone-aware"),
        # What PostgreSQL refuses, refused here with a line that says what it is.
        ({"args": {"s": "a\x00b"}}, r"args cannot be stored: .* NUL character \(\\u0000\)"),
        ({"args": {"k\x00": 1}}, "args cannot be stored: .* NUL character"),
        ({"args": {"s": "\\\x00"}}, "args cannot be stored: .* NUL character"),
        ({"args": {"p": "/d/\udcff.txt"}}, r"args cannot be stored: .* surrogate \(\\udcff\)"),
        ({"args": {"s": ["\ud83d"]}}, r"args cannot be stored: .* surrogate \(\\ud83d\)"),
        ({"args": {"s": "\ude00\ud83d"}}, r"args cannot be stored: .* surrogate \(\\ude00\)"),
        ({"meta": {"s": "\x00"}}, "meta cannot be stored: .* NUL character"),
        ({"tags": ["a\x00"]}, "tags cannot be stored: .* NUL character"),
        ({"tags": ["\udcff"]}, r"tags cannot be stored: an unpaired surrogate \(\\udcff\)"),
    ],
)
def test_bad_input_is_refused_before_the_database(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)


def test_what_jsonb_refuses_is_refused_on_every_way_in() -> None:
    class W(pgqueue.Worker):
        name = "test.jsonb_refuses"

        def perform(self, job: pgqueue.Job) -> None:
            return None

    for make in (
        lambda: W.new({"s": "\x00"}),  # the fast path (Worker.new without options)
        lambda: W.new({"s": "\x00"}, priority=1),
        lambda: JobSpec.build("w\x00", {}),
        lambda: pgqueue.Cron("* * * * *", "w", args={"s": "\udcff"}),
    ):
        with pytest.raises(ConfigError, match="cannot be stored") as info:
            make()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    ["\\u0000", "\\\\ud800", "\U0001f600", "\u00e9\\ude00", "x\\x00", "\\\\\\u0000"],
    ids=[
        "escaped-nul",
        "escaped-surrogate",
        "pair",
        "escaped-low",
        "nul-name",
        "three-backslashes",
    ],
)
def test_look_alikes_of_what_jsonb_refuses_are_accepted(value: str) -> None:
    spec = build(args={"s": value}, meta={"m": value}, tags=[value])
    assert json.loads(spec.args_json) == {"s": value} and json.loads(spec.meta_json) == {"m": value}
