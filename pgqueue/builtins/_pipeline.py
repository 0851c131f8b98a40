"""Chaining the built-in steps: how a finished step enqueues the next one, once.

A pipeline is a ``ProcessFile`` job whose args name the steps to run after it, in
``then`` (registered worker names). Each step enqueues the next with the state it has
gathered so far (``file``, ``key``, ``object``, ``context``) plus ``pipeline``:
``{"id": <the ProcessFile job id>, "step": n, "then": [...what remains...]}``.

The enqueue is unique on ``pipeline`` for as long as the row exists, so a step that
runs again (its worker died after enqueueing, its ack was lost) finds the job it
already enqueued instead of adding a second one: a retried ProcessFile never uploads
or fans out twice.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from .. import _registry
from .._backoff import backoff_seconds
from .._client import Client, default_client
from .._errors import ConfigError
from .._job import Job, JobSpec
from .._outcomes import Snooze
from .._unique import Unique
from .._worker import Worker
from ._breaker import ANSWERED, CircuitBreaker, breaker_for
from ._config import BreakerSettings, RetrySettings

# Keyed on the whole ``pipeline`` value (root job id, step number, remaining steps).
NEXT_STEP_UNIQUE = Unique(period=None, keys=["pipeline"])

# Keys of a step's args that belong to the chain, not to the step's payload.
CHAIN_KEYS = ("pipeline", "then")


class BuiltinWorker(Worker, abstract=True):
    """Shared behaviour of the built-in workers: the backoff from the environment."""

    def backoff(self, job: Job) -> float:
        retry = RetrySettings.from_env(os.environ)
        return backoff_seconds(job.attempt, base=retry.base, cap=retry.cap, rng=random)


@contextmanager
def through(
    job: Job,
    breaker: CircuitBreaker,
    classify: Callable[[Exception], str],
    *,
    patience: float,
    describe: Callable[[Exception], str],
) -> Iterator[None]:
    """``breaker.guard`` for ``job``: a snooze is counted in the job's meta
    (``breaker_snoozes``, ``breaker``; a failed probe's error, as ``describe`` words it
    without secrets, in ``breaker_error``) so ``pgqueue inspect`` shows why it waits.

    A failed probe is free only within ``patience`` seconds of the first time the
    breaker held this job back (``breaker_since``, set at its first snooze and cleared
    once the destination answers it); past them it is raised as the failure it was and
    costs an attempt as any other would. Counted from the hold, not from the enqueue: a
    job scheduled days ahead, or kept in a paused queue, has all its patience when it
    meets an outage.
    """
    try:
        with breaker.guard(classify):
            yield
    except Snooze as snooze:
        failed_probe = snooze.__cause__
        since = _held_since(job)
        waited = 0.0 if since is None else (datetime.now(UTC) - since).total_seconds()
        if isinstance(failed_probe, Exception) and waited >= patience:
            raise failed_probe from None
        count = job.meta.get("breaker_snoozes", 0)
        meta: dict[str, Any] = {
            "breaker_snoozes": (count if isinstance(count, int) else 0) + 1,
            "breaker": breaker.name,
        }
        if since is None:
            meta["breaker_since"] = datetime.now(UTC).isoformat()
        if isinstance(failed_probe, Exception):
            meta["breaker_error"] = describe(failed_probe)
        job.update_meta(meta)
        raise
    except Exception as exc:
        # Only an answer ends the hold: a transport failure on a closed circuit (a
        # restarted process's breaker, a request of its own that always times out) keeps
        # the patience counting, or a destination that never returns would hold the job
        # for up to max_attempts patiences.
        if classify(exc) == ANSWERED:
            _got_through(job)
        raise
    else:
        _got_through(job)


def _held_since(job: Job) -> datetime | None:
    """When the breaker first held ``job`` back in this outage, None if it has not. A
    value that is not a time, or lies ahead by more than CLOCK_SKEW (written by a host
    whose clock runs fast: every other host would find its failed probes free until that
    date), counts as none: the next snooze starts the count again."""
    since = job.meta.get("breaker_since")
    if not isinstance(since, str):
        return None
    try:
        held = datetime.fromisoformat(since)
    except ValueError:
        return None
    held = held if held.tzinfo is not None else held.replace(tzinfo=UTC)
    if (held - datetime.now(UTC)).total_seconds() > CLOCK_SKEW:
        return None
    return held


# Seconds a host's clock may run ahead of another's before its breaker_since is ignored.
CLOCK_SKEW = 300.0


def _got_through(job: Job) -> None:
    """The destination answered the job (or it finished): a later outage gives it its
    patience again."""
    if job.meta.get("breaker_since") is not None:
        job.update_meta({"breaker_since": None})


def guarded(
    job: Job,
    destination: str,
    classify: Callable[[Exception], str],
    translate: Callable[[Exception], Exception],
) -> AbstractContextManager[None]:
    """``through`` with this process's breaker for ``destination`` and the breaker
    settings of the environment; ``translate`` words a failed probe's error as the
    worker reports its failures (one line, no secrets)."""
    settings = BreakerSettings.from_env(os.environ)
    return through(
        job,
        breaker_for(destination, settings),
        classify,
        patience=settings.patience,
        describe=lambda exc: str(translate(exc)),
    )


def check_steps(steps: Sequence[str | type[Worker]]) -> list[str]:
    """Worker names from classes or names, checked to be non-empty strings."""
    if isinstance(steps, str):
        raise ConfigError(f"then must be a list of worker names, got the string {steps!r}")
    names = []
    for step in steps:
        name = step.name if isinstance(step, type) and issubclass(step, Worker) else step
        if not isinstance(name, str) or not name:
            raise ConfigError(f"then must list worker names or Worker classes, got {step!r}")
        names.append(name)
    return names


def remaining_steps(job: Job) -> list[str]:
    """The steps still to run after ``job``: from ``pipeline.then``, or ``then`` on the
    first step."""
    chain = job.args.get("pipeline")
    steps = chain.get("then", []) if isinstance(chain, Mapping) else job.args.get("then", [])
    return check_steps(steps or [])


def enqueue_next(job: Job, state: Mapping[str, Any], *, client: Client | None = None) -> Job | None:
    """Enqueue the step after ``job`` with ``state`` as its args (plus ``pipeline``).

    Returns the next job (the existing one when this step already enqueued it), or
    None when ``job`` was the last step. A custom final step can call this too.
    """
    steps = remaining_steps(job)
    if not steps:
        return None
    name, rest = steps[0], steps[1:]
    cls = _registry.lookup(name)
    if cls is None:
        raise ConfigError(
            f"pipeline step {name!r} is not a registered worker in this process; "
            "import the module that defines it from the --app module"
        )
    chain = job.args.get("pipeline")
    root = chain.get("id", job.id) if isinstance(chain, Mapping) else job.id
    step = chain.get("step", 0) + 1 if isinstance(chain, Mapping) else 1
    args = {k: v for k, v in state.items() if k not in CHAIN_KEYS}
    args["pipeline"] = {"id": root, "step": step, "then": rest}
    spec: JobSpec = cls.new(args, unique=NEXT_STEP_UNIQUE)
    return (client or default_client()).enqueue_many([spec])[0]


def pipeline_spec(
    path: str,
    steps: Sequence[str | type[Worker]],
    *,
    name: str | None = None,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    **options: Any,
) -> JobSpec:
    """A ``ProcessFile`` job for ``path`` followed by ``steps``; enqueue it with
    ``client.enqueue_many([spec], conn=conn)`` inside the transaction that records it.

    ``name`` is the file's original name (for the content type and the event), ``key``
    the object key for B2Upload (default: the SHA-256), ``context`` anything the
    consumers of the event should get back (an upload id...).
    """
    from ._process import ProcessFile

    args: dict[str, Any] = {"path": path, "then": check_steps(steps)}
    if name is not None:
        args["name"] = name
    if key is not None:
        args["key"] = key
    if context:
        args["context"] = dict(context)
    return ProcessFile.new(args, **options)
