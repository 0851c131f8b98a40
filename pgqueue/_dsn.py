"""Where the database is, and how to talk about it without leaking its password.

The DSN comes from the caller or ``$DATABASE_URL``. Anything pgqueue prints about a
connection goes through ``describe`` or ``scrub``, which drop the password.
"""

from __future__ import annotations

import os
import re

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ._errors import ConfigError, DatabaseUnavailable

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def resolve_dsn(dsn: str | None) -> str:
    """The DSN to use: the one given, else ``$DATABASE_URL``; validated, never echoed."""
    value = dsn if dsn else os.environ.get("DATABASE_URL", "")
    if not value:
        raise ConfigError("no database given: pass --dsn or set DATABASE_URL")
    try:
        conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        reason = (str(exc).strip().splitlines() or ["unparseable"])[0]
        raise ConfigError(
            f"the DSN is not a valid PostgreSQL connection string: {scrub(reason, value)}"
        ) from None
    return value


def describe(dsn: str) -> str:
    """``user@host:port/dbname`` for messages: enough to recognise, no secret."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    host = info.get("host") or os.environ.get("PGHOST") or "localhost"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    user = info.get("user") or os.environ.get("PGUSER") or ""
    db = info.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


def scrub(text: str, dsn: str | None = None) -> str:
    """``text`` with any password it might contain replaced by ``***``."""
    text = _URI_PASSWORD.sub(r"\1***\3", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    if dsn:
        secret = _password_of(dsn)
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _password_of(dsn: str) -> str | None:
    try:
        return conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        m = _URI_PASSWORD.search(dsn)
        return m.group(2) if m else None


def connection_options(application_name: str = "pgqueue") -> dict[str, object]:
    """libpq settings for every connection a worker node opens.

    TCP keepalives and a user timeout make a connection whose peer vanished (a failover,
    a dropped NAT entry) fail within about half a minute instead of hanging for hours.
    """
    return {
        "autocommit": True,
        "connect_timeout": 10,
        "application_name": application_name[:63],
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }


def unavailable(exc: BaseException, dsn: str) -> DatabaseUnavailable:
    """A one-line, password-free error for a failed connection to ``dsn``."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe(dsn)}: {scrub(first, dsn)}"
    )
