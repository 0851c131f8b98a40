"""``pgqueue inspect``: the queues at a glance, a filtered job list, or one job in full.

- no argument: one row per queue with its jobs by state, how long its oldest available
  job has waited, and whether it is paused or scaled;
- ``--state/--queue/--worker/--tag/--node/--args`` (any of them): the matching jobs,
  newest first, ``--limit`` of them;
- ``JOB_ID``: one job with its args, meta, attempts and every error with its traceback.
"""

from __future__ import annotations

import json
from typing import Any

import click

from pgqueue import _admin, _ops
from pgqueue._job import Job
from pgqueue._states import STATES

from ._common import (
    Failed,
    Usage,
    check_queue,
    db_options,
    open_schema,
    parse_json_object,
    reports_errors,
)
from ._format import (
    JOB_FIELDS,
    age,
    echo_json,
    job_dict,
    one_line,
    stamp,
    state_since,
    table,
)

COUNT_ORDER = (
    "available",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)
# A final state whose statistics put it above this many rows is estimated, not counted
# (an exact count reads ~5 MB of index per million rows); --exact counts it anyway.
EXACT_BELOW = 1_000_000


@click.command()
@click.argument("job_id", required=False, type=click.IntRange(min=1))
@db_options
@click.option("--state", type=click.Choice(STATES), default=None, help="List jobs in this state.")
@click.option("--queue", default=None, help="List jobs of this queue.")
@click.option("--worker", default=None, help="List jobs of this worker (its registered name).")
@click.option("--tag", default=None, help="List jobs carrying this tag.")
@click.option("--node", default=None, help="List jobs last claimed by this node.")
@click.option("--args", "args_json", default=None, help="List jobs whose args contain this JSON.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Jobs to list (alone: the newest jobs).",
)
@click.option("--exact", is_flag=True, help="Count every state exactly, even huge ones.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented).")
@reports_errors
def inspect(
    job_id: int | None,
    dsn: str | None,
    schema: str,
    state: str | None,
    queue: str | None,
    worker: str | None,
    tag: str | None,
    node: str | None,
    args_json: str | None,
    limit: int,
    exact: bool,
    as_json: bool,
) -> None:
    """Show the queues, a filtered job list, or one job (JOB_ID) with its errors."""
    ctx = click.get_current_context()
    args = None if args_json is None else parse_json_object(args_json)
    filters = {"--state": state, "--queue": queue, "--worker": worker, "--tag": tag}
    filters.update({"--node": node, "--args": args_json})
    given = [name for name, value in filters.items() if value is not None]
    limit_given = ctx.get_parameter_source("limit") is click.core.ParameterSource.COMMANDLINE
    if job_id is not None and (given or limit_given):
        raise Usage(f"JOB_ID shows one job; {', '.join(given or ['--limit'])} filter job lists")
    if exact and (job_id is not None or given or limit_given):
        raise Usage("--exact applies to the per-queue counts (no JOB_ID, no filters)")
    with open_schema(dsn, schema) as conn:
        if job_id is not None:
            job = _admin.get_job(conn, schema, job_id)
            if job is None:
                raise Failed(f"no job with id {job_id} in schema {schema}")
            _show_job(job, as_json)
        elif given or limit_given:
            check_queue(conn, schema, queue)
            jobs = _ops.list_jobs(
                conn,
                schema,
                state=state,
                queue=queue,
                worker=worker,
                tag=tag,
                node=node,
                args=args,
                limit=limit + 1,
            )
            _show_list(jobs[:limit], more=len(jobs) > limit, limit=limit, as_json=as_json)
        else:
            overview = _ops.queue_overview(conn, schema, exact=exact, exact_below=EXACT_BELOW)
            controls = _admin.queue_controls(conn, schema)
            _show_overview(schema, overview, controls, as_json)


# ---- the queues -------------------------------------------------------------------------


def overview_dict(
    schema: str, overview: _ops.Overview, controls: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    queues: dict[str, Any] = {}
    for queue in sorted(set(overview.counts) | set(controls)):
        entry: dict[str, Any] = dict(overview.counts.get(queue) or dict.fromkeys(STATES, 0))
        entry["oldest_available_s"] = overview.oldest_available.get(queue)
        control = controls.get(queue) or {}
        entry["paused"] = bool(control.get("paused"))
        entry["limit"] = control.get("limit")
        queues[queue] = entry
    return {
        "schema": schema,
        "queues": queues,
        "estimated": list(overview.estimated),
        "table_rows_estimate": overview.table_rows,
    }


def _control_text(entry: dict[str, Any]) -> str:
    parts = []
    if entry["paused"]:
        parts.append("paused")
    if entry["limit"] is not None:
        parts.append(f"limit {entry['limit']}")
    return ", ".join(parts)


def _show_overview(
    schema: str,
    overview: _ops.Overview,
    controls: dict[str, dict[str, Any]],
    as_json: bool,
) -> None:
    data = overview_dict(schema, overview, controls)
    if as_json:
        echo_json(data)
        return
    if not data["queues"]:
        click.echo(f"no jobs in schema {schema}")
        return
    mark = {s: "~" if s in overview.estimated else "" for s in COUNT_ORDER}
    rows = [
        [
            queue,
            *(f"{mark[s]}{entry[s]}" for s in COUNT_ORDER),
            age(entry["oldest_available_s"]),
            _control_text(entry),
        ]
        for queue, entry in data["queues"].items()
    ]
    headers = ["QUEUE", *(s.upper() for s in COUNT_ORDER), "OLDEST_AVAILABLE", "CONTROL"]
    click.echo(table(headers, rows, right=set(range(1, 9))))
    if overview.estimated:
        click.echo(
            f"\n~ estimated from a sample: {', '.join(overview.estimated)} "
            f"(the table holds about {overview.table_rows:,} rows); --exact counts them"
        )


# ---- job lists --------------------------------------------------------------------------


def _show_list(jobs: list[Job], *, more: bool, limit: int, as_json: bool) -> None:
    if as_json:
        echo_json({"jobs": [job_dict(j) for j in jobs], "limit": limit, "more": more})
        return
    if not jobs:
        click.echo("no jobs match")
        return
    rows = [
        [
            j.id,
            j.state,
            j.queue,
            j.worker,
            f"{j.attempt}/{j.max_attempts}",
            ",".join(j.tags),
            stamp(state_since(j)),
            one_line(f"{j.errors[-1]['error']}: {j.errors[-1]['message']}", 60) if j.errors else "",
        ]
        for j in jobs
    ]
    headers = ["ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "TAGS", "STATE_SINCE", "LAST_ERROR"]
    click.echo(table(headers, rows, right={0}))
    if more:
        click.echo(f"\n(the newest {limit} shown; --limit N for more)")


# ---- one job ----------------------------------------------------------------------------


def _show_job(job: Job, as_json: bool) -> None:
    data = job_dict(job, full=True)
    if as_json:
        echo_json(data)
        return
    click.echo(f"job {job.id}: {job.worker} in queue {job.queue}, {job.state}")
    width = max(len(name) for name in JOB_FIELDS)
    for name in JOB_FIELDS:
        value = data[name]
        if name == "tags":
            text = ", ".join(value) if value else "-"
        elif name == "attempt":
            text = f"{value} of {job.max_attempts}"
        elif hasattr(value, "astimezone"):
            text = stamp(value)
        else:
            text = "-" if value is None else str(value)
        if name != "max_attempts":
            click.echo(f"  {name:<{width}}  {text}")
    for name, value in (("args", job.args), ("meta", job.meta)):
        click.echo(f"{name}:")
        for line in json.dumps(value, indent=2, sort_keys=True, default=str).splitlines():
            click.echo(f"  {line}")
    click.echo(f"errors: {len(job.errors)}")
    for err in job.errors:
        click.echo(
            f"\n--- attempt {err.get('attempt')} at {err.get('at')}: "
            f"{err.get('error')}: {err.get('message')}"
        )
        if err.get("traceback"):
            click.echo(str(err["traceback"]).rstrip())
