"""``pgqueue retry``: bring jobs back to ``available`` (the dead-letter case first).

``pgqueue retry --state discarded [--queue Q] [--worker W] [--tag T]`` empties the dead
letter (or part of it); ``pgqueue retry 7 9`` retries single jobs. A job that had used
all its attempts gets one more. Executing and available jobs are left alone, and every
id that was not retried is named with the reason.
"""

from __future__ import annotations

from typing import Any

import click

from pgqueue import _admin, _ops

from ._common import Failed, Usage, check_queue, db_options, open_schema, reports_errors
from ._format import echo_json

RETRYABLE_STATES = ("discarded", "cancelled", "retryable", "scheduled", "completed")


def explain(ids: list[int], states: dict[int, str], verb: str) -> str:
    """Why each id was left alone, on one line."""
    reasons = []
    for job_id in ids:
        state = states.get(job_id)
        reasons.append(
            f"job {job_id} does not exist" if state is None else f"job {job_id} is {state}"
        )
    return f"not {verb}: " + "; ".join(reasons)


@click.command()
@click.argument("job_ids", nargs=-1, type=click.IntRange(min=1))
@db_options
@click.option(
    "--state",
    type=click.Choice(RETRYABLE_STATES),
    default=None,
    help="Retry every job in this state (e.g. discarded).",
)
@click.option("--queue", default=None, help="With --state: only this queue.")
@click.option("--worker", default=None, help="With --state: only this worker.")
@click.option("--tag", default=None, help="With --state: only jobs with this tag.")
@click.option("--dry-run", is_flag=True, help="With --state: count what would be retried.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented).")
@reports_errors
def retry(
    job_ids: tuple[int, ...],
    dsn: str | None,
    schema: str,
    state: str | None,
    queue: str | None,
    worker: str | None,
    tag: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Retry JOB_IDS, or every job matching --state [--queue] [--worker] [--tag]."""
    if bool(job_ids) == bool(state):
        raise Usage(
            "give job ids or --state (e.g. pgqueue retry --state discarded), not both or neither"
        )
    if (queue or worker or tag or dry_run) and not state:
        raise Usage("--queue, --worker, --tag and --dry-run go with --state, not with job ids")
    with open_schema(dsn, schema) as conn:
        if job_ids:
            retry_ids(conn, schema, list(dict.fromkeys(job_ids)), as_json)
            return
        assert state is not None
        check_queue(conn, schema, queue)
        if dry_run:
            n = _ops.count_matching(conn, schema, state, queue=queue, worker=worker, tag=tag)
            if as_json:
                echo_json({"would_retry": n, "state": state})
            else:
                click.echo(f"would retry {n} {state} job(s)")
            return
        changed = _ops.retry_matching(conn, schema, state, queue=queue, worker=worker, tag=tag)
        if as_json:
            echo_json({"retried": changed, "not_retried": {}})
        else:
            click.echo(f"retried {len(changed)} {state} job(s)")


def retry_ids(conn: Any, schema: str, ids: list[int], as_json: bool) -> None:
    changed = _admin.retry_jobs(conn, schema, ids)
    missing = [i for i in ids if i not in set(changed)]
    states = _ops.job_states(conn, schema, missing) if missing else {}
    if as_json:
        echo_json(
            {"retried": changed, "not_retried": {str(i): states.get(i, "missing") for i in missing}}
        )
    else:
        click.echo(
            f"retried {len(changed)} job(s)"
            + (f": {', '.join(map(str, changed))}" if changed else "")
        )
    if missing:
        raise Failed(explain(missing, states, "retried"))
