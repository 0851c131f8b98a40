"""The ``pgqueue`` command: migrate, run workers, enqueue, and operate queues.

Ships inside the wheel as ``pgqueue.cli`` (see pyproject's package-dir). Exit codes
(DESIGN §4): 0 success, 1 the operation failed, 2 bad usage; every error is one line on
stderr, click's own usage errors included.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pgqueue import __version__

from ._common import usage_line
from .cancel import cancel
from .enqueue import enqueue
from .inspect import inspect
from .migrate import migrate
from .nodes import nodes
from .prune import prune
from .queues import pause, resume, scale
from .retry import retry
from .worker import worker


class Main(click.Group):
    """The command group, with usage errors shortened to one line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if len(args) < 2:
            kwargs.setdefault("prog_name", "pgqueue")  # not "python -m pgqueue"
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `pgqueue` alone prints the help
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            click.echo(usage_line(exc), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(
    cls=Main,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="pgqueue")
def main() -> None:
    """pgqueue: durable jobs on PostgreSQL."""


for command in (
    migrate,
    worker,
    enqueue,
    inspect,
    retry,
    cancel,
    pause,
    resume,
    scale,
    prune,
    nodes,
):
    main.add_command(command)

__all__ = ["main"]
