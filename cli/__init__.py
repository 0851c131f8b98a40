"""The ``pgqueue`` command: migrate, run workers, enqueue, and operate queues.

Ships inside the wheel as ``pgqueue.cli`` (see pyproject's package-dir).
"""

from __future__ import annotations

import click

from pgqueue import __version__

from .enqueue import enqueue
from .inspect import inspect
from .migrate import migrate
from .retry import retry
from .worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pgqueue")
def main() -> None:
    """pgqueue: durable jobs on PostgreSQL."""


for command in (migrate, worker, enqueue, inspect, retry):
    main.add_command(command)

__all__ = ["main"]
