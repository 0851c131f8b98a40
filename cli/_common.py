"""What every ``pgqueue`` command shares: ``--dsn``/``--schema``, connecting, and errors.

Every failure becomes one line on stderr and an exit code (1: the operation failed,
2: bad usage); a traceback is shown only with ``PGQUEUE_DEBUG=1``, a password never.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import psycopg

from pgqueue._client import check_schema
from pgqueue._dsn import resolve_dsn, scrub, unavailable
from pgqueue._errors import ConfigError, PgQueueError
from pgqueue._migrate import check_migrated

F = TypeVar("F", bound=Callable[..., Any])


class Failed(click.ClickException):
    """An operation failed: one line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {' '.join(self.format_message().split())}", err=True)


class Usage(click.UsageError):
    """Bad usage found after parsing (e.g. a malformed option value): exit 2."""

    def show(self, file: Any = None) -> None:
        click.echo(usage_line(self), err=True)


def usage_line(exc: click.UsageError) -> str:
    """Any usage error (ours or click's) as one line, with where to find help."""
    message = " ".join(exc.format_message().split())
    path = exc.ctx.command_path if exc.ctx is not None else "pgqueue"
    return f"error: {message} (see `{path} --help`)"


def _valid_schema(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--schema`` checked as the Client checks it, for every command (``migrate`` too:
    a schema too long for its notification channel would install and then refuse every
    enqueue): bad usage, exit 2."""
    try:
        return check_schema(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def db_options(fn: F) -> F:
    """Add ``--dsn`` (default ``$DATABASE_URL``) and ``--schema`` (default ``public``)."""
    fn = click.option(
        "--schema",
        envvar="PGQUEUE_SCHEMA",
        default="public",
        show_default=True,
        callback=_valid_schema,
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


@contextmanager
def open_schema(dsn: str | None, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """``connect`` and check that ``schema`` is migrated ("run `pgqueue migrate`")."""
    with connect(dsn) as conn:
        check_migrated(conn, schema)
        yield conn


def check_queue(conn: psycopg.Connection[Any], schema: str, queue: str | None) -> None:
    """A queue named on the command line must exist: a typo is an error, not "no jobs"."""
    from pgqueue import _admin

    if queue is not None and not _admin.known_queue(conn, schema, queue):
        raise Failed(
            f"unknown queue {queue!r} in schema {schema}: no jobs, no pause/scale setting and "
            "no live node serve it (`pgqueue inspect` lists the queues)"
        )


def parse_json_object(text: str, option: str = "--args") -> dict[str, Any]:
    """A JSON object given on the command line, or a usage error saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Usage(
            f"{option} must be a JSON object, got invalid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise Usage(f"{option} must be a JSON object, got a JSON {type(value).__name__}")
    return value


__all__ = [
    "ConfigError",
    "Failed",
    "Usage",
    "check_queue",
    "connect",
    "db_options",
    "open_schema",
    "parse_json_object",
    "reports_errors",
    "usage_line",
]
