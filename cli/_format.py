"""How commands print: aligned tables and ages for people, stable JSON for scripts.

The JSON shapes are a contract (docs/operations.md documents them): keys are only ever
added, timestamps are ISO 8601 in UTC, durations are seconds as numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click

from pgqueue._job import Job

JOB_FIELDS = (
    "id",
    "state",
    "queue",
    "worker",
    "attempt",
    "max_attempts",
    "priority",
    "tags",
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "discarded_at",
    "cancelled_at",
    "attempted_by",
)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def stamp(value: datetime | None) -> str:
    """A timestamp for a table cell: UTC, to the second."""
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=_jsonable))


def age(seconds: float | None) -> str:
    """``0.4s``, ``42s``, ``4m12s``, ``2h05m``, ``3d04h``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``1d12h``, ``2w`` → seconds (> 0)."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(
                f"expected a duration like 90s, 15m, 12h, 7d or 1d12h, got {text!r}"
            ) from None
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not seconds > 0:
        raise ValueError(f"expected a duration > 0, got {text!r}")
    return seconds


def table(headers: list[str], rows: Iterable[list[Any]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` holds right-aligned (numeric) ones."""
    right = right or set()
    cells = [headers, *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def one_line(text: str, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def last_error(job: Job) -> dict[str, Any] | None:
    if not job.errors:
        return None
    err = job.errors[-1]
    return {k: err.get(k) for k in ("attempt", "at", "error", "message")}


def job_dict(job: Job, *, full: bool = False) -> dict[str, Any]:
    """A job as ``inspect --json`` prints it; ``full`` adds args, meta and every error."""
    data: dict[str, Any] = {name: getattr(job, name) for name in JOB_FIELDS}
    data["errors_count"] = len(job.errors)
    data["last_error"] = last_error(job)
    if full:
        data["args"] = job.args
        data["meta"] = job.meta
        data["errors"] = job.errors
    return data


def state_since(job: Job) -> datetime | None:
    """When the job entered its current state, as far as the row tells."""
    return {
        "completed": job.completed_at,
        "discarded": job.discarded_at,
        "cancelled": job.cancelled_at,
        "executing": job.attempted_at,
    }.get(job.state, job.scheduled_at)
