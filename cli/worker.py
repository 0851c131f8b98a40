"""``pgqueue worker --app MODULE``: run a node until SIGTERM/SIGINT.

The first signal starts a graceful shutdown (stop claiming, wait ``--shutdown-grace``,
hand unfinished jobs back); a second one cuts the wait short.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
import threading

import click

from pgqueue import _client, _logging
from pgqueue._config import parse_queues
from pgqueue._errors import ConfigError
from pgqueue._node import Node

from ._common import Failed, Usage, db_options, reports_errors


class QueuesType(click.ParamType):
    name = "NAME:N,..."

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, int]:
        if isinstance(value, dict):
            return value
        try:
            return parse_queues(str(value))
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def import_app(name: str) -> None:
    """Import the module that registers the workers (and may configure the client)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise Usage(
                f"--app {name}: no module named {exc.name!r} (is it on PYTHONPATH?)"
            ) from None
        raise Failed(f"--app {name} failed to import: ModuleNotFoundError: {exc}") from None
    except Exception as exc:
        raise Failed(f"--app {name} failed to import: {type(exc).__name__}: {exc}") from None


@click.command()
@click.option("--app", required=True, help="Module that defines (registers) the workers.")
@click.option(
    "--queues",
    type=QueuesType(),
    default="default:10",
    show_default=True,
    help="Queues and their concurrency.",
)
@click.option("--node", "node_name", default=None, help="Node name (default host.pid).")
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=15.0,
    show_default=True,
    help="Seconds running jobs get to finish after SIGTERM.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls when no notification arrives.",
)
@click.option(
    "--listen/--no-listen",
    default=True,
    show_default=True,
    help="Use LISTEN/NOTIFY (turn off behind PgBouncer in transaction mode).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@db_options
@reports_errors
def worker(
    app: str,
    queues: dict[str, int],
    node_name: str | None,
    shutdown_grace: float,
    poll_interval: float,
    listen: bool,
    log_level: str,
    dsn: str | None,
    schema: str,
) -> None:
    """Process jobs of the given queues until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import_app(app)
    _logging.install()
    ctx = click.get_current_context()
    configured = _client.configured_client()
    if configured is not None:
        # The app chose its database; explicit command-line options still win.
        if ctx.get_parameter_source("dsn") is not click.core.ParameterSource.COMMANDLINE:
            dsn = configured.dsn
        if ctx.get_parameter_source("schema") is not click.core.ParameterSource.COMMANDLINE:
            schema = configured.schema
    node = Node(
        dsn,
        schema=schema,
        queues=queues,
        name=node_name,
        poll_interval=poll_interval,
        shutdown_grace=shutdown_grace,
        listen=listen,
    )
    asyncio.run(_run(node))
    logging.shutdown()
    if any(t.name.startswith("pgqueue-job") and t.is_alive() for t in threading.enumerate()):
        # A sync job ignored the stop request; its job is handed back. Do not wait for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def _run(node: Node) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run()
