"""``pgqueue inspect``: counts per queue and state, job lists, one job with its errors."""

from __future__ import annotations

from typing import Any

import click

from pgqueue import _admin
from pgqueue._job import Job
from pgqueue._states import STATES

from ._common import Failed, connect, db_options, echo_json, reports_errors

COUNT_ORDER = (
    "available",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)


def job_dict(job: Job, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "state": job.state,
        "queue": job.queue,
        "worker": job.worker,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "tags": job.tags,
        "inserted_at": job.inserted_at,
        "scheduled_at": job.scheduled_at,
        "attempted_at": job.attempted_at,
        "completed_at": job.completed_at,
        "discarded_at": job.discarded_at,
        "cancelled_at": job.cancelled_at,
        "attempted_by": job.attempted_by,
        "errors_count": len(job.errors),
    }
    if full:
        data.update(args=job.args, meta=job.meta, errors=job.errors)
    return data


def table(headers: list[str], rows: list[list[Any]], right: set[int] | None = None) -> str:
    right = right or set()
    cells = [headers, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


@click.command()
@click.argument("job_id", required=False, type=int)
@db_options
@click.option("--state", type=click.Choice(STATES), default=None, help="List jobs in this state.")
@click.option("--queue", default=None, help="List jobs of this queue.")
@click.option("--worker", default=None, help="List jobs of this worker.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def inspect(
    job_id: int | None,
    dsn: str | None,
    schema: str,
    state: str | None,
    queue: str | None,
    worker: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show counts per queue and state, a filtered job list, or one job (JOB_ID)."""
    with connect(dsn) as conn:
        from pgqueue._migrate import check_migrated

        check_migrated(conn, schema)
        if job_id is not None:
            job = _admin.get_job(conn, schema, job_id)
            if job is None:
                raise Failed(f"no job with id {job_id} in schema {schema}")
            _show_job(job, as_json)
        elif state or queue or worker:
            jobs = _admin.list_jobs(
                conn, schema, state=state, queue=queue, worker=worker, limit=limit
            )
            _show_list(jobs, as_json)
        else:
            _show_counts(_admin.count_jobs(conn, schema), as_json)


def _show_counts(counts: dict[str, dict[str, int]], as_json: bool) -> None:
    if as_json:
        echo_json({"queues": counts})
        return
    if not counts:
        click.echo("no jobs")
        return
    rows = [[q, *(c[s] for s in COUNT_ORDER)] for q, c in sorted(counts.items())]
    click.echo(table(["QUEUE", *(s.upper() for s in COUNT_ORDER)], rows, right=set(range(1, 8))))


def _show_list(jobs: list[Job], as_json: bool) -> None:
    if as_json:
        echo_json([job_dict(j) for j in jobs])
        return
    if not jobs:
        click.echo("no jobs")
        return
    rows = [
        [
            j.id,
            j.state,
            j.queue,
            j.worker,
            f"{j.attempt}/{j.max_attempts}",
            j.scheduled_at.strftime("%Y-%m-%d %H:%M:%S") if j.scheduled_at else "",
            (j.errors[-1]["error"] + ": " + j.errors[-1]["message"])[:60] if j.errors else "",
        ]
        for j in jobs
    ]
    click.echo(
        table(
            ["ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "SCHEDULED_AT", "LAST ERROR"],
            rows,
            right={0},
        )
    )


def _show_job(job: Job, as_json: bool) -> None:
    data = job_dict(job, full=True)
    if as_json:
        echo_json(data)
        return
    import json

    for key in (
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
    ):
        click.echo(f"{key:>13}: {data[key] if data[key] is not None else '-'}")
    click.echo(f"{'args':>13}: {json.dumps(job.args, sort_keys=True)}")
    click.echo(f"{'meta':>13}: {json.dumps(job.meta, sort_keys=True)}")
    click.echo(f"{'errors':>13}: {len(job.errors)}")
    for err in job.errors:
        click.echo(
            f"\n--- attempt {err.get('attempt')} at {err.get('at')}: {err.get('error')}: {err.get('message')}"
        )
        if err.get("traceback"):
            click.echo(err["traceback"].rstrip())
