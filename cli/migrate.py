"""``pgqueue migrate``: apply pending migrations (or print them with ``--dry-run``)."""

from __future__ import annotations

import click

from pgqueue import _migrate

from ._common import connect, db_options, reports_errors


@click.command()
@db_options
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@reports_errors
def migrate(dsn: str | None, schema: str, dry_run: bool) -> None:
    """Apply pending migrations; safe to run from many nodes at once."""
    with connect(dsn) as conn:
        if dry_run:
            todo = _migrate.pending(conn, schema)
            if todo:
                click.echo(_migrate.render(schema, todo), nl=False)
            else:
                click.echo(
                    f"-- schema {schema} is up to date (version {_migrate.latest_version()})"
                )
            return
        applied = _migrate.migrate(conn, schema)
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"schema {schema} is at version {_migrate.latest_version()}")
