"""What ``pgqueue retry`` and ``pgqueue cancel`` share: jobs chosen by id or by
``--state`` with filters, a dry run, and a report that names every id left alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import psycopg

from pgqueue import _ops

from ._common import Failed, Usage, check_queue, db_options, open_schema, reports_errors
from ._format import echo_json

Ids = Callable[[psycopg.Connection[Any], str, list[int]], list[int]]
Matching = Callable[..., list[int]]


@dataclass(frozen=True)
class Action:
    verb: str  # "retry"
    done: str  # "retried"
    example: str  # how --state is used, for the usage error
    on_ids: Ids  # the _admin operation on ids; returns the ids it changed
    on_matching: Matching  # (conn, schema, state, queue=, worker=, tag=) -> changed ids


def command(action: Action, states: tuple[str, ...], state_help: str) -> click.Command:
    """The whole ``pgqueue <verb>`` command: JOB_IDS, or --state with the filters."""
    verb = action.verb

    @click.command(
        name=verb,
        help=f"{verb.capitalize()} JOB_IDS, or every job matching --state [--queue] [--worker] [--tag].",
    )
    @click.argument("job_ids", nargs=-1, type=click.IntRange(min=1))
    @db_options
    @click.option("--state", type=click.Choice(states), default=None, help=state_help)
    @click.option("--queue", default=None, help="With --state: only this queue.")
    @click.option("--worker", default=None, help="With --state: only this worker.")
    @click.option("--tag", default=None, help="With --state: only jobs with this tag.")
    @click.option(
        "--dry-run", is_flag=True, help=f"With --state: count what would be {action.done}."
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented).")
    @reports_errors
    def select(
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
        if bool(job_ids) == bool(state):
            raise Usage(f"give job ids or --state (e.g. {action.example}), not both or neither")
        if (queue or worker or tag or dry_run) and not state:
            raise Usage("--queue, --worker, --tag and --dry-run go with --state, not with job ids")
        with open_schema(dsn, schema) as conn:
            if job_ids:
                _on_ids(action, conn, schema, list(dict.fromkeys(job_ids)), as_json)
                return
            assert state is not None
            check_queue(conn, schema, queue)
            filters = {"queue": queue, "worker": worker, "tag": tag}
            if dry_run:
                n = _ops.count_matching(conn, schema, state, **filters)
                if as_json:
                    echo_json({f"would_{verb}": n, "state": state})
                else:
                    click.echo(f"would {verb} {n} {state} job(s)")
                return
            changed = action.on_matching(conn, schema, state, **filters)
            if as_json:
                echo_json({action.done: changed, f"not_{action.done}": {}})
            else:
                click.echo(f"{action.done} {len(changed)} {state} job(s)")

    return select


def _on_ids(
    action: Action, conn: psycopg.Connection[Any], schema: str, ids: list[int], as_json: bool
) -> None:
    changed = action.on_ids(conn, schema, ids)
    done = set(changed)
    missing = [i for i in ids if i not in done]
    states = _ops.job_states(conn, schema, missing) if missing else {}
    if as_json:
        echo_json(
            {
                action.done: changed,
                f"not_{action.done}": {str(i): states.get(i, "missing") for i in missing},
            }
        )
    else:
        click.echo(
            f"{action.done} {len(changed)} job(s)"
            + (f": {', '.join(map(str, changed))}" if changed else "")
        )
    if missing:
        raise Failed(_explain(missing, states, action.done))


def _explain(ids: list[int], states: dict[int, str], done: str) -> str:
    """Why each id was left alone, on one line."""
    reasons = []
    for job_id in ids:
        state = states.get(job_id)
        reasons.append(
            f"job {job_id} does not exist" if state is None else f"job {job_id} is {state}"
        )
    return f"not {done}: " + "; ".join(reasons)
