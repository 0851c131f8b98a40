"""Defining workers: the ``Worker`` base class and the ``@worker`` function form.

A subclass registers itself as ``"<module>.<ClassName>"`` (or its ``name``) when its
module is imported. Class attributes are the defaults of its jobs; ``new`` builds an
insert request and ``enqueue`` / ``enqueue_async`` insert one through a ``Client``;
``enqueue_many`` / ``enqueue_many_async`` insert one per args of a list, as one batch.
"""

from __future__ import annotations

import inspect
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from . import _registry
from ._backoff import backoff_seconds
from ._engine import COPY_CHUNK, COPY_FROM, copy_form
from ._errors import ConfigError
from ._job import QUEUE_NAME, Job, JobSpec, collector_paused
from ._unique import Unique

if TYPE_CHECKING:
    import psycopg

    from ._client import Client

_MISSING: Any = object()


class Worker:
    """Subclass and define ``perform`` (sync or ``async``) to declare a kind of job."""

    name: ClassVar[str]
    queue: ClassVar[str] = "default"
    max_attempts: ClassVar[int] = 20
    priority: ClassVar[int] = 0
    timeout: ClassVar[float | None] = 300.0
    unique: ClassVar[Unique | None] = None
    #: Cron expression(s) at whose slots the leader enqueues this worker with empty args.
    cron: ClassVar[str | Sequence[str] | None] = None
    cron_timezone: ClassVar[str] = "UTC"
    is_async: ClassVar[bool] = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        """Register the subclass; ``abstract=True`` makes a shared base that is not a worker."""
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        if "name" not in cls.__dict__:
            cls.name = f"{cls.__module__}.{cls.__qualname__}"
        _registry.check_name(cls.name)  # before anything puts it in a message or a row
        if "perform" not in cls.__dict__ and not any(
            "perform" in base.__dict__ for base in cls.__mro__[1:-2]
        ):
            raise ConfigError(f"worker {cls.name} must define perform(self, job)")
        cls.is_async = inspect.iscoroutinefunction(cls.perform)
        _validate(cls)
        _registry.register(cls.name, cls)
        if cls.__dict__.get("cron"):
            from ._cron import cron

            for expression in [cls.cron] if isinstance(cls.cron, str) else cls.cron:
                cron(expression, cls, timezone=cls.cron_timezone)

    def perform(self, job: Job) -> object:  # pragma: no cover - always overridden
        raise NotImplementedError

    def backoff(self, job: Job) -> float:
        """Seconds until the next attempt after ``job.attempt`` failed (see README)."""
        return backoff_seconds(job.attempt, rng=random)

    @classmethod
    def new(
        cls,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        tags: Iterable[str] = (),
        meta: Mapping[str, Any] | None = None,
        scheduled_at: datetime | None = None,
        schedule_in: float | None = None,
        unique: Unique | None = _MISSING,
    ) -> JobSpec:
        """An insert request with this worker's defaults; give it to ``enqueue_many``."""
        if (
            queue is None and priority is None and max_attempts is None and not tags
            and meta is None and scheduled_at is None and schedule_in is None
            and unique is _MISSING
        ):  # fmt: skip
            return JobSpec.with_defaults(
                cls.name, args, cls.queue, cls.priority, cls.max_attempts, cls.unique
            )
        return JobSpec.build(
            cls.name,
            args,
            queue=cls.queue if queue is None else queue,
            priority=cls.priority if priority is None else priority,
            max_attempts=cls.max_attempts if max_attempts is None else max_attempts,
            tags=tags,
            meta=meta,
            scheduled_at=scheduled_at,
            schedule_in=schedule_in,
            unique=cls.unique if unique is _MISSING else unique,
        )

    @classmethod
    def new_many(
        cls, args_list: Iterable[Mapping[str, Any] | None], **options: Any
    ) -> list[JobSpec]:
        """``new`` for every args in ``args_list``, each with the same ``options``.

        The specs are built with the garbage collector paused: a hundred thousand new
        specs would otherwise set off full collections of the caller's heap, which took as
        long as building them (0.12 s of 0.23 s for 100,000)."""
        with collector_paused():
            return [cls.new(args, **options) for args in args_list]

    @classmethod
    def enqueue_many(
        cls,
        args_list: Iterable[Mapping[str, Any] | None],
        *,
        client: Client | None = None,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> list[Job]:
        """Insert one job per args, all with the same options, as one batch (one
        statement, or COPY from 500 jobs); with ``conn``, inside the caller's transaction.
        Returns the jobs in order; a bad args or option fails the whole batch and inserts
        nothing. From 500 jobs on pgqueue's own connection, the jobs are built a chunk at a
        time while the database inserts the chunk before (see ``_stream``).
        """
        from ._client import default_client

        client = client or default_client()
        args, stream = cls._stream(args_list, conn, options)
        if stream is not None:
            with collector_paused():
                return client._copy_many(len(args), *stream)
        return client.enqueue_many(cls.new_many(args, **options), conn=conn)

    @classmethod
    async def enqueue_many_async(
        cls,
        args_list: Iterable[Mapping[str, Any] | None],
        *,
        client: Client | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> list[Job]:
        """``enqueue_many`` for asyncio code; ``conn`` is the caller's ``AsyncConnection``."""
        from ._client import default_client

        client = client or default_client()
        args, stream = cls._stream(args_list, conn, options)
        if stream is not None:
            with collector_paused():
                return await client._copy_many_async(len(args), *stream)
        return await client.enqueue_many_async(cls.new_many(args, **options), conn=conn)

    @classmethod
    def _stream(
        cls, args_list: Iterable[Mapping[str, Any] | None], conn: Any, options: dict[str, Any]
    ) -> tuple[Sequence[Mapping[str, Any] | None], tuple[Iterator[list[JobSpec]], str] | None]:
        """The args as a sequence, and, when the batch can be streamed into a COPY, its
        chunks of specs (built lazily, the first one now) and its ``copy_form``.

        Building 100,000 specs takes about as long as the database's COPY of them; sent a
        chunk at a time, the two overlap instead of adding up. Streamed only when every
        spec is known to be alike from the options alone (this class's ``new`` is
        Worker's, no uniqueness): a COPY's columns are fixed before its first row. Only on
        pgqueue's own connection, which a failure mid-COPY rolls back whole; a caller's
        transaction gets the batch built first, so a bad args leaves it usable.
        """
        args = args_list if isinstance(args_list, Sequence) else list(args_list)
        if (
            conn is not None
            or len(args) < COPY_FROM
            or cls.new.__func__ is not Worker.new.__func__  # type: ignore[attr-defined]
            or options.get("unique", cls.unique) is not None
        ):
            return args, None
        # The first chunk now: a bad option fails before any id is reserved.
        first = cls.new_many(args[:COPY_CHUNK], **options)
        rest = (
            cls.new_many(args[i : i + COPY_CHUNK], **options)
            for i in range(COPY_CHUNK, len(args), COPY_CHUNK)
        )
        # Alike from the options, the first spec is the form of every one.
        return args, (itertools.chain([first], rest), copy_form(first[:1]))

    @classmethod
    def enqueue(
        cls,
        args: Mapping[str, Any] | None = None,
        *,
        client: Client | None = None,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> Job:
        """Insert one job; with ``conn``, inside the caller's open transaction."""
        from ._client import default_client

        return (client or default_client()).enqueue_many([cls.new(args, **options)], conn=conn)[0]

    @classmethod
    async def enqueue_async(
        cls,
        args: Mapping[str, Any] | None = None,
        *,
        client: Client | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> Job:
        """``enqueue`` for asyncio code; ``conn`` is the caller's ``AsyncConnection``."""
        from ._client import default_client

        jobs = await (client or default_client()).enqueue_many_async(
            [cls.new(args, **options)], conn=conn
        )
        return jobs[0]


def _validate(cls: type[Worker]) -> None:
    if not isinstance(cls.queue, str) or not QUEUE_NAME.match(cls.queue):
        raise ConfigError(f"{cls.name}.queue must be a queue name, got {cls.queue!r}")
    if (
        isinstance(cls.priority, bool)
        or not isinstance(cls.priority, int)
        or not 0 <= cls.priority <= 9
    ):
        raise ConfigError(f"{cls.name}.priority must be 0..9, got {cls.priority!r}")
    if (
        isinstance(cls.max_attempts, bool)
        or not isinstance(cls.max_attempts, int)
        or cls.max_attempts < 1
    ):
        raise ConfigError(f"{cls.name}.max_attempts must be >= 1, got {cls.max_attempts!r}")
    if cls.timeout is not None and (
        isinstance(cls.timeout, bool)
        or not isinstance(cls.timeout, int | float)
        or cls.timeout <= 0
    ):
        raise ConfigError(f"{cls.name}.timeout must be seconds > 0 or None, got {cls.timeout!r}")
    if cls.unique is not None and not isinstance(cls.unique, Unique):
        raise ConfigError(f"{cls.name}.unique must be a pgqueue.Unique, got {cls.unique!r}")


def worker(
    fn: Callable[[Job], object] | None = None,
    *,
    name: str | None = None,
    queue: str = "default",
    max_attempts: int = 20,
    priority: int = 0,
    timeout: float | None = 300.0,
    unique: Unique | None = None,
    backoff: Callable[[Job], float] | None = None,
    cron: str | Sequence[str] | None = None,
    cron_timezone: str = "UTC",
) -> Any:
    """Register a function as a worker: ``@pgqueue.worker(queue="mail") def send(job): ...``.

    Returns a ``Worker`` subclass named after the function, so ``send.enqueue({...})``
    and ``send.new({...})`` work, and ``send.run(job)`` calls the function directly.
    """

    def wrap(func: Callable[[Job], object]) -> type[Worker]:
        attrs: dict[str, Any] = {
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
            "__doc__": func.__doc__,
            "name": f"{func.__module__}.{func.__qualname__}" if name is None else name,
            "queue": queue,
            "max_attempts": max_attempts,
            "priority": priority,
            "timeout": timeout,
            "unique": unique,
            "cron": cron,
            "cron_timezone": cron_timezone,
            "run": staticmethod(func),
        }
        if inspect.iscoroutinefunction(func):

            async def perform_async(self: Worker, job: Job) -> object:
                return await func(job)  # type: ignore[misc]

            attrs["perform"] = perform_async
        else:

            def perform(self: Worker, job: Job) -> object:
                return func(job)

            attrs["perform"] = perform
        if backoff is not None:
            attrs["backoff"] = lambda self, job: backoff(job)
        return type(func.__name__, (Worker,), attrs)

    return wrap(fn) if fn is not None else wrap
