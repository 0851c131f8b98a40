from datetime import datetime

import pytest

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
    ],
)
def test_bad_input_is_refused_before_the_database(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)
