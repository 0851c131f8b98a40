"""One log line per job outcome, from the lifecycle events.

Plain text for people (``job 42 app.Resize queue=media attempt=1 completed in 12.1 ms``);
the fields are also attached to the record (``record.pgqueue``) for structured handlers.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _events
from ._job import Job
from ._outcomes import Transition

log = logging.getLogger("pgqueue.jobs")

_LEVELS = {
    "completed": logging.INFO,
    "scheduled": logging.INFO,
    "retryable": logging.WARNING,
    "discarded": logging.ERROR,
    "cancelled": logging.WARNING,
}


def outcome_fields(job: Job, transition: Transition, duration: float, node: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "job_id": job.id,
        "worker": job.worker,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "outcome": "snoozed" if transition.state == "scheduled" else transition.state,
        "duration_ms": round(duration * 1000, 3),
        "node": node,
    }
    if transition.delay is not None:
        fields["next_in_s"] = round(transition.delay, 3)
    if transition.error is not None:
        fields["error"] = transition.error["error"]
        fields["message"] = transition.error["message"]
    return fields


def _on_stop(job: Job, node: str, transition: Transition, duration: float, **_: Any) -> None:
    level = _LEVELS.get(transition.state, logging.INFO)
    if not log.isEnabledFor(level):
        return
    f = outcome_fields(job, transition, duration, node)
    text = (
        f"job {f['job_id']} {f['worker']} queue={f['queue']} attempt={f['attempt']}/{f['max_attempts']} "
        f"{f['outcome']} in {f['duration_ms']:.1f} ms"
    )
    if "next_in_s" in f:
        text += f", next in {f['next_in_s']:g} s"
    if "error" in f:
        text += f": {f['error']}: {f['message']}"
    log.log(level, text, extra={"pgqueue": f})


_installed: list[Any] = []


def install() -> None:
    """Start logging job outcomes (idempotent)."""
    if not _installed:
        _installed.append(_events.subscribe("job_stop", _on_stop))
