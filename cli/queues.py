"""``pgqueue pause / resume / scale``: queue controls every node obeys.

They are rows in ``pgqueue_queues``: running nodes are told at once (NOTIFY) and re-read
them periodically, and a node started later honours them, so a paused queue stays
paused across restarts and deploys. Pausing stops claiming; running jobs finish.
"""

from __future__ import annotations

import click

from pgqueue import _admin

from ._common import Usage, check_queue, db_options, open_schema, reports_errors

MAX_LIMIT = 10_000


@click.command()
@click.argument("queues", nargs=-1, required=True)
@db_options
@reports_errors
def pause(queues: tuple[str, ...], dsn: str | None, schema: str) -> None:
    """Stop every node from claiming jobs of QUEUES (persisted until resumed)."""
    with open_schema(dsn, schema) as conn:
        for queue in queues:
            check_queue(conn, schema, queue)
        for queue in queues:
            _admin.pause_queue(conn, schema, queue)
            click.echo(f"paused {queue}: no node claims its jobs until `pgqueue resume {queue}`")


@click.command()
@click.argument("queues", nargs=-1, required=True)
@db_options
@reports_errors
def resume(queues: tuple[str, ...], dsn: str | None, schema: str) -> None:
    """Let nodes claim jobs of QUEUES again."""
    with open_schema(dsn, schema) as conn:
        for queue in queues:
            check_queue(conn, schema, queue)
        for queue in queues:
            _admin.resume_queue(conn, schema, queue)
            click.echo(f"resumed {queue}")


def parse_limit(text: str) -> int | None:
    if text.strip().lower() in ("default", "reset", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise Usage(
            f"LIMIT must be a whole number from 1 to {MAX_LIMIT}, or 'default' to go back to "
            f"each node's --queues setting; got {text!r}"
        )
    return value


@click.command()
@click.argument("queue")
@click.argument("limit")
@db_options
@reports_errors
def scale(queue: str, limit: str, dsn: str | None, schema: str) -> None:
    """Run at most LIMIT jobs of QUEUE at once on each node ('default': undo)."""
    value = parse_limit(limit)
    with open_schema(dsn, schema) as conn:
        check_queue(conn, schema, queue)
        _admin.scale_queue(conn, schema, queue, value)
    if value is None:
        click.echo(f"scaled {queue} back to each node's own concurrency")
    else:
        click.echo(f"scaled {queue} to {value} concurrent job(s) per node")
