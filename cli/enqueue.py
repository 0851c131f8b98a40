"""``pgqueue enqueue WORKER``: insert one job from the shell; prints its id."""

from __future__ import annotations

import click

from pgqueue import Client

from ._common import db_options, parse_json_object, reports_errors


@click.command()
@click.argument("worker")
@db_options
@click.option(
    "--args", "args_json", default="{}", show_default=True, help="Job args as a JSON object."
)
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True)
@click.option("--schedule-in", type=click.FloatRange(min=0), default=None, help="Seconds from now.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@reports_errors
def enqueue(
    worker: str,
    dsn: str | None,
    schema: str,
    args_json: str,
    queue: str,
    priority: int,
    schedule_in: float | None,
    max_attempts: int,
    tags: tuple[str, ...],
) -> None:
    """Enqueue a job of WORKER (its registered name, e.g. app.jobs.Resize)."""
    args = parse_json_object(args_json)
    with Client(dsn, schema=schema) as client:
        job = client.enqueue(
            worker,
            args,
            queue=queue,
            priority=priority,
            schedule_in=schedule_in,
            max_attempts=max_attempts,
            tags=list(tags),
        )
    click.echo(job.id)
