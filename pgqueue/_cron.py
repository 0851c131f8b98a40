"""Cron entries and their slots. Pure: expressions and times in, slots out.

A ``Cron`` names a worker, its args and a croniter expression (five fields, or six with
seconds last) in a time zone. The leader asks ``due_slots`` which slots to insert; the
database (one row per name and slot) makes each slot produce exactly one job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import ConfigError
from ._job import QUEUE_NAME, check_jsonb

# Bounds the catch-up after a leader change: a slot older than this is skipped.
DEFAULT_GRACE = 300.0
MAX_CATCH_UP = 1000


@dataclass(frozen=True, slots=True)
class Cron:
    """Insert a job of ``worker`` at every slot of ``expression`` (in ``timezone``)."""

    expression: str
    worker: str
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    timezone: str = "UTC"
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 20
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # croniter (and dateutil under it) is imported here and in slots_between, not at
        # the top: every process that imports pgqueue (web workers, the CLI, a worker
        # with no cron entry) would pay its 7-14 ms of start-up for nothing.
        from croniter import croniter

        if not isinstance(self.expression, str) or not croniter.is_valid(self.expression):
            raise ConfigError(
                f"not a cron expression: {self.expression!r} (five fields, or six with seconds)"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {self.timezone!r} for cron {self.expression!r}"
            ) from None
        if not QUEUE_NAME.match(self.queue):
            raise ConfigError(f"cron queue must be a queue name, got {self.queue!r}")
        try:
            args_json = json.dumps(dict(self.args), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cron args must be JSON-serialisable: {exc}") from None
        check_jsonb(args_json, "cron args")
        if not self.name:
            digest = hashlib.sha256(args_json.encode()).hexdigest()[:8]
            object.__setattr__(self, "name", f"{self.worker}@{self.expression}#{digest}")

    @property
    def args_json(self) -> str:
        return json.dumps(dict(self.args), sort_keys=True)


def slots_between(
    expression: str, timezone: str, after: datetime, until: datetime, limit: int = MAX_CATCH_UP
) -> list[datetime]:
    """Slots ``s`` with ``after < s <= until`` (aware datetimes), oldest first, at most ``limit``."""
    from croniter import croniter

    tz = ZoneInfo(timezone)
    it = croniter(expression, after.astimezone(tz))
    out: list[datetime] = []
    while len(out) < limit:
        slot: datetime = it.get_next(datetime)
        if slot > until:
            break
        out.append(slot)
    return out


def due_slots(
    entry: Cron, now: datetime, last: datetime | None, grace: float = DEFAULT_GRACE
) -> list[datetime]:
    """The slots of ``entry`` to insert at ``now``.

    With a last inserted slot: every slot after it that is at most ``grace`` seconds old
    (catching up what a leader change missed). Without one (a new entry): only the
    latest slot, and only if it is at most ``grace`` old — a daily job does not fire
    because a node started in the afternoon.
    """
    floor = now.astimezone(UTC) - timedelta(seconds=grace)  # elapsed time, whatever the DST
    if last is not None and last >= floor:
        return slots_between(entry.expression, entry.timezone, last, now)
    slots = slots_between(entry.expression, entry.timezone, floor, now)
    if last is None:
        return slots[-1:]
    return slots


_entries: dict[str, Cron] = {}


def register(entries: Iterable[Cron]) -> None:
    for entry in entries:
        existing = _entries.get(entry.name)
        if existing is not None and existing != entry:
            raise ConfigError(
                f"two cron entries are named {entry.name!r}; give them distinct names"
            )
        _entries[entry.name] = entry


def registered() -> list[Cron]:
    return list(_entries.values())


def cron(
    expression: str,
    worker: Any,
    args: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    timezone: str = "UTC",
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    tags: Iterable[str] = (),
) -> Cron:
    """Declare (and register) a cron entry: ``pgqueue.cron("0 3 * * *", Nightly)``.

    ``worker`` is a Worker class (its queue and priority are the defaults) or a name.
    """
    worker_name = worker if isinstance(worker, str) else worker.name
    entry = Cron(
        expression=expression,
        worker=worker_name,
        args=dict(args or {}),
        name=name or "",
        timezone=timezone,
        queue=queue if queue is not None else getattr(worker, "queue", "default"),
        priority=priority if priority is not None else getattr(worker, "priority", 0),
        max_attempts=max_attempts
        if max_attempts is not None
        else getattr(worker, "max_attempts", 20),
        tags=tuple(tags),
    )
    register([entry])
    return entry
