"""What a job is: the row a worker receives (`Job`) and the request to insert one (`JobSpec`).

`JobSpec` validates and serialises everything at construction, so a bad enqueue fails in
the caller's code with a clear message and nothing reaches the database.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._errors import ConfigError
from ._unique import Unique

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """A hundred thousand new objects, none in a cycle, would set off several full
    collections of the caller's heap on the way; the collector waits for the batch."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


@dataclass(slots=True, eq=False)
class Job:
    """One job row, as a worker's ``perform`` sees it.

    ``conflict`` is True when an enqueue found an existing unique job and returned it
    instead of inserting. ``update_meta`` records values (a result, progress) that are
    merged into the row's ``meta`` when the attempt is acknowledged.
    """

    id: int
    worker: str
    queue: str = "default"
    args: dict[str, Any] = field(default_factory=dict)
    state: str = "available"
    meta: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 0
    max_attempts: int = 20
    priority: int = 0
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None
    attempted_by: str | None = None
    conflict: bool = False
    meta_updates: dict[str, Any] | None = field(default=None, repr=False)
    _cancel: threading.Event | None = field(default=None, repr=False)
    # Set by the executor: when this attempt must end (monotonic clock), and whether it
    # was stopped for that.
    deadline: float | None = field(default=None, repr=False)
    timed_out: bool = field(default=False, repr=False)

    def update_meta(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the job's meta when this attempt is acknowledged.

        What is written is a copy taken now: fail in perform, where the traceback makes
        sense, and never later in the node's acknowledgement, where a value the job went
        on to change (a key that is not a string, a dict holding itself) could not be
        encoded any more."""
        snapshot = json.loads(_json(values, "meta values"))
        if self.meta_updates is None:
            self.meta_updates = {}
        self.meta_updates.update(snapshot)
        self.meta.update(values)

    @property
    def cancel_requested(self) -> bool:
        """True once the node asked this attempt to stop (timeout, cancel, shutdown).

        Sync jobs cannot be interrupted from outside their thread; long ones should check
        this between steps and return early. Whatever they return then is ignored.
        """
        return self._cancel is not None and self._cancel.is_set()

    def request_cancel(self) -> None:
        if self._cancel is None:
            self._cancel = threading.Event()
        self._cancel.set()


def _not_serialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder() -> Any:
    """Encode a dict to compact JSON, refusing NaN and infinities.

    ``JSONEncoder.encode`` sets up its C encoder again at every call, which is most of
    the cost of encoding small args; this one is set up once. It keeps no table of
    objects being encoded (so it is safe to share between threads): a structure that
    contains itself fails on recursion depth instead.
    """
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    encode = make(None, _not_serialisable, json.encoder.encode_basestring_ascii, None,
                  ":", ",", False, False, False)  # fmt: skip
    return lambda value: "".join(encode(value, 0))


_ENCODE = _encoder()


def _json(value: Any, what: str) -> str:
    try:
        encoded = _ENCODE(value)
    except (TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            exc = ValueError("it is nested too deeply or contains itself")
        raise ConfigError(f"{what} must be JSON-serialisable: {exc}") from None
    check_jsonb(encoded, what)
    return encoded


# Two things JSON allows and jsonb refuses: the NUL character, and a UTF-16 surrogate
# that is not half of a pair (a file name decoded with surrogateescape holds them).
# An ASCII encoder writes both as \u escapes; the run of backslashes before one tells an
# escape (odd) from an escaped backslash followed by text (even).
_JSONB_REFUSES = re.compile(
    r"(\\+)u(0000|d[89ab][0-9a-f]{2}(?:\\ud[c-f][0-9a-f]{2})?|d[c-f][0-9a-f]{2})"
)


def check_jsonb(encoded: str, what: str) -> None:
    """Refuse, with a one-line ConfigError, JSON that PostgreSQL's jsonb would reject
    (its error would come from the server, mid-batch, and name neither field nor job)."""
    if "\\u0000" not in encoded and "\\ud" not in encoded:
        return
    for m in _JSONB_REFUSES.finditer(encoded):
        escape, code = m.groups()
        if len(escape) % 2 and len(code) == 4:
            char = "the NUL character" if code == "0000" else "an unpaired surrogate"
            raise ConfigError(
                f"{what} cannot be stored: PostgreSQL refuses {char} (\\u{code}) in jsonb"
            )


def check_text(value: str, what: str) -> None:
    """The same for a text column (or a name: a worker's, a schema's): no NUL, which
    PostgreSQL text cannot hold and libpq would cut a parameter at, and nothing UTF-8
    cannot encode."""
    if "\x00" in value:
        raise ConfigError(f"{what} cannot be stored: PostgreSQL refuses the NUL character in text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{what} cannot be stored: an unpaired surrogate (\\u{ord(exc.object[exc.start]):04x})"
            " is not UTF-8"
        ) from None


@dataclass(slots=True)
class JobSpec:
    """A validated request to insert one job. Build it with ``Worker.new`` or ``JobSpec.build``.

    Treat it as immutable (it is not frozen only because frozen dataclasses construct
    several times slower, and bulk enqueues build hundreds of thousands).
    """

    worker: str
    args: dict[str, Any]
    args_json: str
    queue: str
    priority: int
    max_attempts: int
    tags: tuple[str, ...]
    meta_json: str
    scheduled_at: datetime | None
    schedule_in: float | None
    unique: Unique | None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_defaults(
        cls,
        worker: str,
        args: Mapping[str, Any] | None,
        queue: str,
        priority: int,
        max_attempts: int,
        unique: Unique | None,
    ) -> JobSpec:
        """A spec from settings validated already (a Worker class's): only args to check.

        The common case — ``Worker.new(args)`` — on the path of every bulk enqueue.
        """
        if type(args) is not dict:  # the exact type first: an ABC check costs a tenth
            if args is None:
                args = {}
            elif not isinstance(args, Mapping):
                raise ConfigError(f"args must be a JSON object (a dict), got {type(args).__name__}")
        args = dict(args)
        try:
            encoded = _ENCODE(args)
        except (TypeError, ValueError, RecursionError):
            encoded = _json(args, "args")  # raises the ConfigError that says why
        if "\\u0000" in encoded or "\\ud" in encoded:  # check_jsonb's test, inline: bulk path
            check_jsonb(encoded, "args")
        return cls(worker, args, encoded, queue, priority, max_attempts, (), "{}",
                   None, None, unique, {})  # fmt: skip

    @classmethod
    def build(
        cls,
        worker: str,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 20,
        tags: Iterable[str] = (),
        meta: Mapping[str, Any] | None = None,
        scheduled_at: datetime | None = None,
        schedule_in: float | None = None,
        unique: Unique | None = None,
    ) -> JobSpec:
        if not isinstance(worker, str) or not 0 < len(worker) <= 255:
            raise ConfigError(f"worker must be a name of 1-255 characters, got {worker!r}")
        check_text(worker, "worker")
        args = {} if args is None else args
        if not isinstance(args, Mapping):
            raise ConfigError(f"args must be a JSON object (a dict), got {type(args).__name__}")
        args = dict(args)
        meta = {} if meta is None else meta
        if not isinstance(meta, Mapping):
            raise ConfigError(f"meta must be a JSON object (a dict), got {type(meta).__name__}")
        if not isinstance(queue, str) or not QUEUE_NAME.match(queue):
            raise ConfigError(
                f"queue must be 1-128 characters of letters, digits and _.- ; got {queue!r}"
            )
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
            raise ConfigError(
                f"priority must be an integer from 0 (highest) to 9, got {priority!r}"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if isinstance(tags, str):
            raise ConfigError(f"tags must be a list of strings, got the string {tags!r}")
        tags = tuple(tags)
        if not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"tags must be a list of strings, got {list(tags)!r}")
        for t in tags:
            check_text(t, "tags")
        if scheduled_at is not None and schedule_in is not None:
            raise ConfigError("give scheduled_at or schedule_in, not both")
        if scheduled_at is not None and (
            not isinstance(scheduled_at, datetime) or scheduled_at.tzinfo is None
        ):
            raise ConfigError(
                f"scheduled_at must be a timezone-aware datetime, got {scheduled_at!r}"
            )
        if schedule_in is not None and (
            isinstance(schedule_in, bool)
            or not isinstance(schedule_in, int | float)
            or not math.isfinite(schedule_in)
            or schedule_in < 0
        ):
            raise ConfigError(f"schedule_in must be a number of seconds >= 0, got {schedule_in!r}")
        return cls(
            worker=worker,
            args=args,
            args_json=_json(args, "args"),
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            tags=tags,
            meta_json=_json(dict(meta), "meta"),
            scheduled_at=scheduled_at,
            schedule_in=None if schedule_in is None else float(schedule_in),
            unique=unique,
            meta=dict(meta),
        )
