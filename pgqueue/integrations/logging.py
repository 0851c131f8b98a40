"""Logging of job outcomes: one line per finished attempt, for people or for machines.

``install()`` subscribes to ``job_stop`` and logs, on the ``pgqueue.jobs`` logger, one
record per outcome carrying job id, worker, queue, attempt, outcome and duration::

    job 42 app.jobs.Resize queue=media attempt=1/20 completed in 12.1 ms

The same fields ride on the record as ``record.pgqueue`` (a dict), so any structured
handler can use them. ``configure(level, "json")`` sets up the root logger with
``JsonFormatter``: one JSON object per line, those fields at the top level.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from .. import _events
from .._job import Job
from .._outcomes import Transition

log = logging.getLogger("pgqueue.jobs")

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_LEVELS = {
    "completed": logging.INFO,
    "scheduled": logging.INFO,
    "retryable": logging.WARNING,
    "discarded": logging.ERROR,
    "cancelled": logging.WARNING,
}


def outcome_name(state: str) -> str:
    """The outcome of an attempt as logs and metrics name it (a snooze is ``snoozed``)."""
    return "snoozed" if state == "scheduled" else state


def outcome_fields(job: Job, transition: Transition, duration: float, node: str) -> dict[str, Any]:
    """The structured fields of one outcome line."""
    fields: dict[str, Any] = {
        "job_id": job.id,
        "worker": job.worker,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "outcome": outcome_name(transition.state),
        "duration_ms": round(duration * 1000, 3),
        "node": node,
    }
    if transition.delay is not None:
        fields["next_in_s"] = round(transition.delay, 3)
    if transition.error is not None:
        fields["error"] = transition.error["error"]
        fields["error_message"] = transition.error["message"]
    return fields


def outcome_text(f: dict[str, Any]) -> str:
    text = (
        f"job {f['job_id']} {f['worker']} queue={f['queue']} "
        f"attempt={f['attempt']}/{f['max_attempts']} {f['outcome']} in {f['duration_ms']:.1f} ms"
    )
    if "next_in_s" in f:
        text += f", next in {f['next_in_s']:g} s"
    if "error" in f:
        text += f": {f['error']}: {f['error_message']}"
    return text


def _on_stop(job: Job, node: str, transition: Transition, duration: float, **_: Any) -> None:
    level = _LEVELS.get(transition.state, logging.INFO)
    if not log.isEnabledFor(level):
        return
    fields = outcome_fields(job, transition, duration, node)
    # The message is one line even when the job's error message is not.
    text = " ".join(outcome_text(fields).splitlines())
    log.log(level, text, extra={"pgqueue": fields})


_installed: list[Any] = []


def install() -> None:
    """Start logging job outcomes (idempotent)."""
    if not _installed:
        _installed.append(_events.subscribe("job_stop", _on_stop))


def uninstall() -> None:
    while _installed:
        _installed.pop()()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the record's
    ``pgqueue`` fields (job outcomes), and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "pgqueue", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                data.setdefault(key, value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


def configure(
    level: int | str = logging.INFO, fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Send every log record to ``stream`` (stderr) as text or JSON lines."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
