import pytest

from pgqueue import ConfigError
from pgqueue._config import parse_queues


def test_parses_names_and_concurrency() -> None:
    assert parse_queues("default:10,media:2") == {"default": 10, "media": 2}
    assert parse_queues(" default : 3 , mail ") == {"default": 3, "mail": 10}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "got nothing"),
        ("default:ten", "whole number"),
        ("default:0", "from 1 to 10000"),
        ("default:-1", "from 1 to 10000"),
        ("a b:1", "NAME[:CONCURRENCY]"),
        (":5", "NAME[:CONCURRENCY]"),
        ("a:1,a:2", "listed twice"),
        ("a:1,", "NAME[:CONCURRENCY]"),
    ],
)
def test_rejects_bad_specs_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_queues(text)
