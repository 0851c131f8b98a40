"""Run one pgqueue node with test-sized timings: ``python -m tests.faults.node --app ...``.

The fault suite needs heartbeats, leases and rescue in seconds rather than the
defaults' tens of seconds; this runs the same ``Node`` the ``pgqueue worker`` command
runs, with the same signal handling, and those timings exposed as options.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys

import pgqueue
from pgqueue._config import parse_queues
from pgqueue.integrations import logging as job_logging


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--app", required=True)
    p.add_argument("--queues", default="default:10")
    p.add_argument("--name", default=None)
    p.add_argument("--poll-interval", type=float, default=0.5)
    p.add_argument("--heartbeat-interval", type=float, default=0.5)
    p.add_argument("--heartbeat-expiry", type=float, default=4.0)
    p.add_argument("--lease-ttl", type=float, default=2.0)
    p.add_argument("--rescue-interval", type=float, default=0.5)
    p.add_argument("--shutdown-grace", type=float, default=15.0)
    p.add_argument("--no-listen", action="store_true")
    p.add_argument("--cron", action="append", default=[], help="EXPRESSION=WORKER")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.path.insert(0, os.getcwd())
    importlib.import_module(args.app)
    job_logging.install()
    entries = [
        pgqueue.Cron(expr, worker, name=f"test-{worker}")
        for expr, worker in (c.rsplit("=", 1) for c in args.cron)
    ]
    node = pgqueue.Node(
        os.environ["DATABASE_URL"],
        schema=os.environ.get("PGQUEUE_SCHEMA", "public"),
        queues=parse_queues(args.queues),
        name=args.name,
        poll_interval=args.poll_interval,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_expiry=args.heartbeat_expiry,
        lease_ttl=args.lease_ttl,
        rescue_interval=args.rescue_interval,
        shutdown_grace=args.shutdown_grace,
        listen=not args.no_listen,
        cron=entries,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, node.request_stop)
        await node.run()

    asyncio.run(run())
    logging.shutdown()
    os._exit(0)  # do not wait for a sync job thread that ignored the stop request


if __name__ == "__main__":
    main()
