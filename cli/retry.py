"""``pgqueue retry``: bring jobs back to ``available`` (the dead-letter case first)."""

from __future__ import annotations

import click

from pgqueue import _admin
from pgqueue._migrate import check_migrated

from ._common import Failed, Usage, connect, db_options, reports_errors

RETRYABLE_STATES = ("discarded", "cancelled", "retryable", "scheduled", "completed")


@click.command()
@click.argument("job_ids", nargs=-1, type=int)
@db_options
@click.option(
    "--state",
    type=click.Choice(RETRYABLE_STATES),
    default=None,
    help="Retry every job in this state (e.g. discarded).",
)
@click.option("--queue", default=None, help="With --state: only this queue.")
@click.option("--worker", default=None, help="With --state: only this worker.")
@reports_errors
def retry(
    job_ids: tuple[int, ...],
    dsn: str | None,
    schema: str,
    state: str | None,
    queue: str | None,
    worker: str | None,
) -> None:
    """Retry JOB_IDS, or every job matching --state [--queue] [--worker]."""
    if bool(job_ids) == bool(state):
        raise Usage(
            "give job ids or --state (e.g. pgqueue retry --state discarded), not both or neither"
        )
    if (queue or worker) and not state:
        raise Usage("--queue and --worker filter --state; with job ids they are not used")
    with connect(dsn) as conn:
        check_migrated(conn, schema)
        if job_ids:
            changed = _admin.retry_jobs(conn, schema, job_ids)
            missing = sorted(set(job_ids) - set(changed))
            click.echo(f"retried {len(changed)} job(s)")
            if missing:
                raise Failed(
                    f"not retried (no such job, or executing/available): {', '.join(map(str, missing))}"
                )
        else:
            assert state is not None
            changed = _admin.retry_by_state(conn, schema, state, queue=queue, worker=worker)
            click.echo(f"retried {len(changed)} {state} job(s)")
