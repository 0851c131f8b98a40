"""``pgqueue worker --app MODULE``: run a node until SIGTERM/SIGINT.

The first signal starts a graceful shutdown (stop claiming, wait ``--shutdown-grace``,
hand unfinished jobs back); a second one cuts the wait short.

Integrations are wired here, each imported only when asked for: one log line per job
outcome (``--log-format text|json``), Prometheus (``--metrics-port``), Sentry
(``$SENTRY_DSN``).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from pgqueue import _client
from pgqueue._config import parse_queues
from pgqueue._errors import ConfigError
from pgqueue._node import Node
from pgqueue.integrations import logging as job_logging

from ._common import Failed, Usage, db_options, reports_errors

LOOPS = ("asyncio", "uvloop")


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
@click.option(
    "--log-format",
    type=click.Choice(job_logging.FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for one JSON object per line.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint binds to (0.0.0.0: every interface).",
)
@click.option(
    "--metrics-interval",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds between refreshes of the per-queue gauges from the database.",
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between this node's heartbeats.",
)
@click.option(
    "--heartbeat-expiry",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="A node silent this long is dead: the leader rescues its jobs.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds a leader lease lasts without renewal.",
)
@click.option(
    "--loop",
    "loop_name",
    type=click.Choice(LOOPS),
    default="asyncio",
    show_default=True,
    help="Event loop. uvloop (pip install 'pgqueue[uvloop]') runs more jobs/s at high "
    "concurrency, with a longer tail of enqueue-to-start latency.",
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
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    metrics_interval: float,
    heartbeat_interval: float,
    heartbeat_expiry: float,
    lease_ttl: float,
    loop_name: str,
    dsn: str | None,
    schema: str,
) -> None:
    """Process jobs of the given queues until SIGTERM or SIGINT."""
    job_logging.configure(log_level, log_format)
    loop_factory = _loop_factory(loop_name)
    import_app(app)
    job_logging.install()
    ctx = click.get_current_context()
    configured = _client.configured_client()
    if configured is not None:
        # The app chose its database; explicit command-line options still win.
        if ctx.get_parameter_source("dsn") is not click.core.ParameterSource.COMMANDLINE:
            dsn = configured.dsn
        if ctx.get_parameter_source("schema") is not click.core.ParameterSource.COMMANDLINE:
            schema = configured.schema
    if configured is None or (configured.dsn, configured.schema) != (dsn or configured.dsn, schema):
        # Jobs that enqueue follow-up jobs (pgqueue.builtins) use the default client:
        # it must point where this worker runs.
        _client.configure(dsn, schema=schema)
    node = Node(
        dsn,
        schema=schema,
        queues=queues,
        name=node_name,
        poll_interval=poll_interval,
        shutdown_grace=shutdown_grace,
        listen=listen,
        heartbeat_interval=heartbeat_interval,
        heartbeat_expiry=heartbeat_expiry,
        lease_ttl=lease_ttl,
    )
    sentry = _start_sentry()
    exporter = _start_metrics(node, metrics_port, metrics_host, metrics_interval)
    # Everything loaded so far (interpreter, libraries, the app) lives as long as the
    # process: out of the collector's sight, a full collection scans only what the jobs
    # made since, instead of ~37,000 start-up objects (7.8 ms, paid by whichever job was
    # about to start: the p99 of enqueue-to-start latency).
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_run(node))
    finally:
        if exporter is not None:
            exporter.stop()
        if sentry is not None:
            sentry.flush()
    logging.shutdown()
    if any(t.name.startswith("pgqueue-job") and t.is_alive() for t in threading.enumerate()):
        # A sync job ignored the stop request; its job is handed back. Do not wait for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``--loop`` names; None is asyncio's own.

    Each job costs the worker an asyncio task, its scheduling and a few callbacks, which
    uvloop runs in C: 6-15 % less worker CPU per no-op job and 1.05-1.14x the jobs/s at
    concurrency 100. But the enqueue-to-start p99 rose from 4.0-5.2 to 6.8-7.5 ms, so it
    is a choice, not the default (docs/bench.md).
    """
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise Failed(f"--loop uvloop needs uvloop ({exc}): pip install 'pgqueue[uvloop]'") from None
    return uvloop.new_event_loop


def _start_metrics(node: Node, port: int | None, host: str, interval: float) -> Any:
    if port is None:
        return None
    try:
        from pgqueue.integrations import prometheus
    except ImportError as exc:
        raise Failed(
            f"--metrics-port needs prometheus-client ({exc}): pip install 'pgqueue[prometheus]'"
        ) from None
    exporter = prometheus.Exporter(node.dsn, node.schema, port=port, host=host, interval=interval)
    try:
        exporter.start()
    except OSError as exc:
        raise Failed(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return exporter


def _start_sentry() -> Any:
    """Report failed attempts when SENTRY_DSN is set or the app initialised sentry-sdk."""
    if not os.environ.get("SENTRY_DSN") and "sentry_sdk" not in sys.modules:
        return None
    try:
        from pgqueue.integrations import sentry
    except ImportError as exc:
        raise Failed(
            f"SENTRY_DSN is set but sentry-sdk is missing ({exc}): pip install 'pgqueue[sentry]'"
        ) from None
    try:
        on = sentry.install()
    except Exception as exc:
        # The message may quote the DSN, which holds a key: name the problem only.
        raise Failed(f"SENTRY_DSN is not a usable Sentry DSN ({type(exc).__name__})") from None
    if not on:
        return None
    logging.getLogger("pgqueue.sentry").info("reporting failed attempts to Sentry")
    return sentry


async def _run(node: Node) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run()
