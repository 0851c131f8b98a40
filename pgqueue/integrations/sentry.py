"""Sentry error reporting for worker nodes (``pip install pgqueue[sentry]``).

On when ``SENTRY_DSN`` is set (or the ``--app`` module initialised sentry-sdk itself):
every failed attempt of a job becomes one Sentry event, tagged ``queue``, ``worker``,
``attempt``, ``job_id``, ``node`` and ``outcome`` (``retryable`` or ``discarded``), with
the fingerprint ``[pgqueue, worker, error type]`` so that every retry of the same
failure lands in one issue. A job that raises ``Cancel`` or ``Discard`` chose its
outcome: that is not reported.

Job args (and meta) can hold personal data, so they leave the process only when the
user opts in with ``PGQUEUE_SENTRY_SEND_ARGS=1``; without it the event carries no args
and no stack-frame local variables (``job`` is a local of every ``perform``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import ignore_logger

from .. import _events
from .._job import Job
from .._outcomes import Cancel, Discard, Transition

log = logging.getLogger("pgqueue.sentry")

SEND_ARGS_ENV = "PGQUEUE_SENTRY_SEND_ARGS"
_TRUE = frozenset({"1", "true", "yes", "on"})

_installed: list[Callable[[], None]] = []
_send_args = False


def send_args_from_env() -> bool:
    return os.environ.get(SEND_ARGS_ENV, "").strip().lower() in _TRUE


def install(dsn: str | None = None, *, send_args: bool | None = None, **options: Any) -> bool:
    """Report failed attempts to Sentry; True when reporting is on (idempotent).

    ``dsn`` defaults to ``$SENTRY_DSN``. If the application already called
    ``sentry_sdk.init`` its client is used as it is; otherwise pgqueue initialises one
    (``options`` go to ``sentry_sdk.init``; environment and release come from
    ``SENTRY_ENVIRONMENT`` / ``SENTRY_RELEASE`` as usual).
    """
    global _send_args
    _send_args = send_args_from_env() if send_args is None else send_args
    if not sentry_sdk.get_client().is_active():
        dsn = dsn or os.environ.get("SENTRY_DSN")
        if not dsn:
            return False
        options.setdefault("include_local_variables", _send_args)
        sentry_sdk.init(dsn=dsn, **options)
    # Outcome lines are logged at ERROR for discarded jobs: without this, Sentry's
    # logging integration would report each of them a second time.
    ignore_logger("pgqueue.jobs")
    if not _installed:
        _installed.append(_events.subscribe("job_exception", _on_exception))
    return True


def uninstall() -> None:
    while _installed:
        _installed.pop()()


def flush(timeout: float = 2.0) -> None:
    """Send what is queued (a worker calls this before it exits)."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout)


def fingerprint(job: Job, error: BaseException) -> list[str]:
    kind = type(error)
    return ["pgqueue", job.worker, f"{kind.__module__}.{kind.__qualname__}"]


def job_context(job: Job, node: str, transition: Transition, *, with_args: bool) -> dict[str, Any]:
    context: dict[str, Any] = {
        "id": job.id,
        "worker": job.worker,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "tags": list(job.tags),
        "node": node,
        "outcome": transition.state,
        "inserted_at": job.inserted_at.isoformat() if job.inserted_at else None,
        "scheduled_at": job.scheduled_at.isoformat() if job.scheduled_at else None,
        "attempted_at": job.attempted_at.isoformat() if job.attempted_at else None,
    }
    if transition.delay is not None:
        context["retry_in_s"] = round(transition.delay, 3)
    if with_args:
        context["args"] = job.args
        context["meta"] = job.meta
    return context


def _strip_locals(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    for value in (event.get("exception") or {}).get("values") or ():
        for frame in (value.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    for thread in (event.get("threads") or {}).get("values") or ():
        for frame in (thread.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    return event


def _on_exception(
    job: Job, node: str, transition: Transition, error: BaseException, **_: Any
) -> None:
    if isinstance(error, Cancel | Discard):
        return
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("queue", job.queue)
        scope.set_tag("worker", job.worker)
        scope.set_tag("attempt", str(job.attempt))
        scope.set_tag("job_id", str(job.id))
        scope.set_tag("node", node)
        scope.set_tag("outcome", transition.state)
        scope.fingerprint = fingerprint(job, error)
        scope.set_transaction_name(job.worker)
        scope.set_context("pgqueue job", job_context(job, node, transition, with_args=_send_args))
        if not _send_args:
            scope.add_event_processor(_strip_locals)
        sentry_sdk.capture_exception(error)
