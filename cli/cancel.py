"""``pgqueue cancel``: stop jobs for good (they end ``cancelled``).

``pgqueue cancel 7 9`` cancels single jobs; ``pgqueue cancel --state available --queue
media [--worker W] [--tag T]`` cancels every match (in batches), e.g. a flood of jobs
enqueued by mistake. An executing job is cancelled in its row at once and its node is
told to stop it (async: the task is cancelled; sync: ``job.cancel_requested``); its late
result is ignored.
"""

from __future__ import annotations

import functools

import click

from pgqueue import _admin, _ops

from ._common import db_options, reports_errors
from ._selection import Action, filter_options, run

CANCELLABLE_STATES = ("available", "scheduled", "retryable", "executing")
BATCH = 5_000
CANCEL = Action(
    verb="cancel",
    done="cancelled",
    example="pgqueue cancel --state available --queue Q",
    on_ids=_admin.cancel_jobs,
    on_matching=functools.partial(_ops.apply_matching, action=_admin.cancel_jobs, batch=BATCH),
)


@click.command()
@click.argument("job_ids", nargs=-1, type=click.IntRange(min=1))
@db_options
@click.option(
    "--state",
    type=click.Choice(CANCELLABLE_STATES),
    default=None,
    help="Cancel every job in this state (with the filters below).",
)
@filter_options("cancelled")
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
    run(CANCEL, job_ids, dsn, schema, state, queue, worker, tag, dry_run, as_json)
