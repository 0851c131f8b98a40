"""Parsing of node options given as text (the CLI's ``--queues``). Pure."""

from __future__ import annotations

from ._errors import ConfigError
from ._job import QUEUE_NAME

DEFAULT_CONCURRENCY = 10


def parse_queues(text: str) -> dict[str, int]:
    """``"default:10,media:2"`` → ``{"default": 10, "media": 2}``; a bare name gets 10."""
    queues: dict[str, int] = {}
    if not text or not text.strip():
        raise ConfigError(
            "expected queues as NAME[:CONCURRENCY],... (e.g. default:10,media:2), got nothing"
        )
    for part in text.split(","):
        part = part.strip()
        name, sep, limit_text = part.partition(":")
        name = name.strip()
        if not QUEUE_NAME.match(name):
            raise ConfigError(
                f"expected NAME[:CONCURRENCY] with a name of letters, digits and _.-, got {part!r}"
            )
        if sep:
            try:
                limit = int(limit_text.strip())
            except ValueError:
                raise ConfigError(
                    f"expected a whole number of slots after {name}:, got {limit_text!r}"
                ) from None
        else:
            limit = DEFAULT_CONCURRENCY
        if not 1 <= limit <= 10_000:
            raise ConfigError(f"queue {name} needs a concurrency from 1 to 10000, got {limit}")
        if name in queues:
            raise ConfigError(f"queue {name} is listed twice")
        queues[name] = limit
    return queues
