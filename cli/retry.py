"""``pgqueue retry``: bring jobs back to ``available`` (the dead-letter case first).

``pgqueue retry --state discarded [--queue Q] [--worker W] [--tag T]`` empties the dead
letter (or part of it); ``pgqueue retry 7 9`` retries single jobs. A job that had used
all its attempts gets one more. Executing and available jobs are left alone, and every
id that was not retried is named with the reason.
"""

from __future__ import annotations

import click

from pgqueue import _admin, _ops

from ._common import db_options, reports_errors
from ._selection import Action, filter_options, run

RETRYABLE_STATES = ("discarded", "cancelled", "retryable", "scheduled", "completed")
RETRY = Action(
    verb="retry",
    done="retried",
    example="pgqueue retry --state discarded",
    on_ids=_admin.retry_jobs,
    on_matching=_ops.retry_matching,
)


@click.command()
@click.argument("job_ids", nargs=-1, type=click.IntRange(min=1))
@db_options
@click.option(
    "--state",
    type=click.Choice(RETRYABLE_STATES),
    default=None,
    help="Retry every job in this state (e.g. discarded).",
)
@filter_options("retried")
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
    run(RETRY, job_ids, dsn, schema, state, queue, worker, tag, dry_run, as_json)
