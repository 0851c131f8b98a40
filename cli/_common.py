"""What every ``pgqueue`` command shares: ``--dsn``/``--schema``, connecting, and errors.

Every failure becomes one line on stderr and an exit code (1: the operation failed,
2: bad usage); a traceback is shown only with ``PGQUEUE_DEBUG=1``, a password never.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import psycopg

from pgqueue._dsn import resolve_dsn, scrub, unavailable
from pgqueue._errors import ConfigError, PgQueueError

F = TypeVar("F", bound=Callable[..., Any])


class Failed(click.ClickException):
    """An operation failed: one line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Usage(click.UsageError):
    """Bad usage found after parsing (e.g. a malformed option value): exit 2."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def db_options(fn: F) -> F:
    """Add ``--dsn`` (default ``$DATABASE_URL``) and ``--schema`` (default ``public``)."""
    fn = click.option(
        "--schema",
        envvar="PGQUEUE_SCHEMA",
        default="public",
        show_default=True,
        help="Schema of the pgqueue tables (env PGQUEUE_SCHEMA).",
    )(fn)
    fn = click.option(
        "--dsn",
        envvar="DATABASE_URL",
        default=None,
        show_default=False,
        help="PostgreSQL connection string (env DATABASE_URL).",
    )(fn)
    return fn


def reports_errors(fn: F) -> F:
    """Turn pgqueue, psycopg and unexpected errors into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dsn = kwargs.get("dsn") or os.environ.get("DATABASE_URL")
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConfigError as exc:
            raise Failed(scrub(str(exc), dsn)) from None
        except PgQueueError as exc:
            raise Failed(scrub(str(exc), dsn)) from None
        except psycopg.Error as exc:
            raise Failed(f"database error: {scrub(_first_line(exc), dsn)}") from None
        except Exception as exc:
            if os.environ.get("PGQUEUE_DEBUG"):
                raise
            raise Failed(
                f"unexpected {type(exc).__name__}: {scrub(_first_line(exc), dsn)} "
                "(PGQUEUE_DEBUG=1 shows the traceback)"
            ) from None

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def connect(dsn: str | None, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """One connection for one command; a failure to connect is a one-line error."""
    value = resolve_dsn(dsn)
    try:
        conn = psycopg.connect(value, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as exc:
        raise unavailable(exc, value) from None
    try:
        yield conn
    finally:
        conn.close()


def echo_json(value: Any) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


__all__ = ["ConfigError", "Failed", "Usage", "connect", "db_options", "echo_json", "reports_errors"]
