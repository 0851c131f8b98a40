"""Shared fixtures: one fresh database per test session, one schema per test module.

The server is ``$DATABASE_URL`` when set (``make test`` and CI set it), otherwise an
embedded PostgreSQL started for the session. On CI (``CI=true``) a missing server is a
failure, never a skip.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import pgqueue
from pgqueue import _migrate
from pgqueue._client import SCHEMA_MAX_BYTES
from tests.helpers import SLOWDOWN, stop_on_sigterm


def pytest_sessionstart(session: pytest.Session) -> None:
    stop_on_sigterm()


def pytest_report_header(config: pytest.Config) -> str:
    return f"machine slowdown: {SLOWDOWN:.1f}x (waits and pytest-timeout stretched by it)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of 3.12's asyncio left out below 3.12 (deselected, not skipped: CI runs them
    in its 3.12 and 3.13 legs); pytest-timeout's limit, like every wait, stretched by
    the machine's slowdown."""
    if sys.version_info < (3, 12):
        older = [item for item in items if item.get_closest_marker("py312")]
        if older:
            config.hook.pytest_deselected(items=older)
            items[:] = [item for item in items if not item.get_closest_marker("py312")]
    if SLOWDOWN <= 1.0:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        limit = float(marker.args[0]) if marker and marker.args else default
        if limit > 0:
            item.add_marker(pytest.mark.timeout(limit * SLOWDOWN), append=False)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    if os.environ.get("CI"):
        pytest.fail("CI=true but DATABASE_URL is not set: .ci/run must provide the server")
    from pgqueue.testing.embedded import EmbeddedPostgres

    with EmbeddedPostgres() as pg:
        yield pg.dsn


@pytest.fixture(scope="session")
def dsn(server_dsn: str) -> Iterator[str]:
    """A database created for this test session and dropped after it."""
    name = f"pgqueue_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server_dsn, dbname=name)
    yield url
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def schema_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    return f"t_{base}"[:SCHEMA_MAX_BYTES]


@pytest.fixture(scope="module")
def schema(dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated schema of this test module's own."""
    name = schema_name(request)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        _migrate.migrate(conn, name)
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def db(dsn: str, schema: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection with the module's schema emptied and on the search path."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'pgqueue_migrations'",
                [schema],
            )
        ]
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
            )
        )
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        yield conn


@pytest.fixture
def client(dsn: str, schema: str, db: psycopg.Connection) -> Iterator[pgqueue.Client]:
    with pgqueue.Client(dsn, schema=schema) as c:
        yield c


@pytest.fixture
def env(dsn: str, schema: str) -> dict[str, str]:
    """Environment for pgqueue subprocesses: this session's database and module's schema."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "PGQUEUE_SCHEMA": schema,
        "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
