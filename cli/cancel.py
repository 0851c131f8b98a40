"""``pgqueue cancel``: stop jobs for good (they end ``cancelled``).

``pgqueue cancel 7 9`` cancels single jobs; ``pgqueue cancel --state available --queue
media [--worker W] [--tag T]`` cancels every match (in batches), e.g. a flood of jobs
enqueued by mistake. An executing job is cancelled in its row at once and its node is
told to stop it (async: the task is cancelled; sync: ``job.cancel_requested``); its late
result is ignored.
"""

from __future__ import annotations

from typing import Any

import click

from pgqueue import _admin, _ops

from ._common import Failed, Usage, check_queue, db_options, open_schema, reports_errors
from ._format import echo_json
from .retry import explain

CANCELLABLE_STATES = ("available", "scheduled", "retryable", "executing")
BATCH = 5_000


@click.command()
@click.argument("job_ids", nargs=-1, type=click.IntRange(min=1))
@db_options
@click.option(
    "--state",
    type=click.Choice(CANCELLABLE_STATES),
    default=None,
    help="Cancel every job in this state (with the filters below).",
)
@click.option("--queue", default=None, help="With --state: only this queue.")
@click.option("--worker", default=None, help="With --state: only this worker.")
@click.option("--tag", default=None, help="With --state: only jobs with this tag.")
@click.option("--dry-run", is_flag=True, help="With --state: count what would be cancelled.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented).")
@reports_errors
def cancel(
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
    """Cancel JOB_IDS, or every job matching --state [--queue] [--worker] [--tag]."""
    if bool(job_ids) == bool(state):
        raise Usage(
            "give job ids or --state (e.g. pgqueue cancel --state available --queue Q), "
            "not both or neither"
        )
    if (queue or worker or tag or dry_run) and not state:
        raise Usage("--queue, --worker, --tag and --dry-run go with --state, not with job ids")
    with open_schema(dsn, schema) as conn:
        if job_ids:
            _cancel_ids(conn, schema, list(dict.fromkeys(job_ids)), as_json)
            return
        assert state is not None
        check_queue(conn, schema, queue)
        if dry_run:
            n = _ops.count_matching(conn, schema, state, queue=queue, worker=worker, tag=tag)
            if as_json:
                echo_json({"would_cancel": n, "state": state})
            else:
                click.echo(f"would cancel {n} {state} job(s)")
            return
        cancelled: list[int] = []
        after = 0
        while True:
            ids = _ops.select_job_ids(
                conn, schema, state, queue=queue, worker=worker, tag=tag, after=after, limit=BATCH
            )
            if not ids:
                break
            cancelled.extend(_admin.cancel_jobs(conn, schema, ids))
            after = ids[-1]
        if as_json:
            echo_json({"cancelled": cancelled, "not_cancelled": {}})
        else:
            click.echo(f"cancelled {len(cancelled)} {state} job(s)")


def _cancel_ids(conn: Any, schema: str, ids: list[int], as_json: bool) -> None:
    changed = _admin.cancel_jobs(conn, schema, ids)
    missing = [i for i in ids if i not in set(changed)]
    states = _ops.job_states(conn, schema, missing) if missing else {}
    if as_json:
        echo_json(
            {
                "cancelled": changed,
                "not_cancelled": {str(i): states.get(i, "missing") for i in missing},
            }
        )
    else:
        click.echo(
            f"cancelled {len(changed)} job(s)"
            + (f": {', '.join(map(str, changed))}" if changed else "")
        )
    if missing:
        raise Failed(explain(missing, states, "cancelled"))
