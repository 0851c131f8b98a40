"""``pgqueue prune``: delete finished jobs older than their state's maximum age, now.

The cluster's leader prunes on its own; this is for an operator who wants space back
now or different ages once (``pgqueue prune --completed 1h``). Deletes run in batches,
so they never hold many row locks at once. ``--dry-run`` only counts.
"""

from __future__ import annotations

from typing import Any

import click

from pgqueue import _admin, _ops
from pgqueue._leader import DEFAULT_PRUNE_AGES

from ._common import Usage, db_options, open_schema, reports_errors
from ._format import age, echo_json, parse_duration, table

FINAL = ("completed", "discarded", "cancelled")


def _age_option(state: str) -> Any:
    return click.option(
        f"--{state}",
        f"{state}_age",
        default=None,
        metavar="AGE",
        help=f"Delete {state} jobs older than AGE (default {age(DEFAULT_PRUNE_AGES[state])}).",
    )


@click.command()
@db_options
@_age_option("completed")
@_age_option("discarded")
@_age_option("cancelled")
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented).")
@reports_errors
def prune(
    dsn: str | None,
    schema: str,
    completed_age: str | None,
    discarded_age: str | None,
    cancelled_age: str | None,
    batch: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete completed, discarded and cancelled jobs older than their AGE (90s, 12h, 7d)."""
    given = {"completed": completed_age, "discarded": discarded_age, "cancelled": cancelled_age}
    ages: dict[str, float] = {}
    for state, text in given.items():
        if text is not None:
            try:
                ages[state] = parse_duration(text)
            except ValueError as exc:
                raise Usage(f"--{state}: {exc}") from None
    effective = {**DEFAULT_PRUNE_AGES, **ages}
    with open_schema(dsn, schema) as conn:
        if dry_run:
            counts = _ops.count_prunable(conn, schema, effective)
        else:
            counts = _admin.prune_jobs(conn, schema, ages=ages, batch=batch)
    key = "would_delete" if dry_run else "deleted"
    if as_json:
        echo_json({key: counts, "older_than_s": effective})
        return
    verb = "would delete" if dry_run else "deleted"
    rows = [[s, counts.get(s, 0), age(effective[s])] for s in FINAL]
    click.echo(table(["STATE", verb.upper().replace(" ", "_"), "OLDER_THAN"], rows, right={1}))
