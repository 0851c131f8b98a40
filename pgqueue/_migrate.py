"""Apply the numbered SQL files of ``pgqueue.migrations`` to a schema, once each.

Safe from many nodes at once: everything happens in one transaction that first takes
an advisory lock scoped to the schema, so concurrent migrators queue up and the later
ones find nothing left to do. DDL is transactional in PostgreSQL, so a failed migration
leaves the schema as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from ._errors import NotMigrated
from .sql import queries

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def available() -> tuple[Migration, ...]:
    """Every migration shipped with this version of pgqueue, in order."""
    found = []
    for entry in resources.files("pgqueue.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n without gaps: {versions}")
    return tuple(found)


def latest_version() -> int:
    return available()[-1].version


def _search_path(schema: str) -> str:
    # New objects go to the first schema on the path, so the target comes first.
    return sql.Identifier(schema).as_string() + ", pg_catalog"


def _table(schema: str) -> str:
    return sql.Identifier(schema).as_string() + ".pgqueue_migrations"


def applied_versions(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    """Versions recorded in ``schema`` (empty when pgqueue was never migrated there)."""
    q = queries(schema)
    exists = conn.execute(q.migrations_table_exists, {"table": _table(schema)}).fetchone()
    if not exists or not exists[0]:
        return []
    return [row[0] for row in conn.execute(q.applied_migrations).fetchall()]


def pending(conn: psycopg.Connection[Any], schema: str) -> list[Migration]:
    done = set(applied_versions(conn, schema))
    return [m for m in available() if m.version not in done]


def render(schema: str, migrations: list[Migration]) -> str:
    """The SQL a migration run would execute, for ``migrate --dry-run``."""
    head = [
        "BEGIN;",
        f"CREATE SCHEMA IF NOT EXISTS {sql.Identifier(schema).as_string()};",
        f"SET LOCAL search_path TO {_search_path(schema)};",
    ]
    body = [f"-- {m.version:04d}_{m.name}.sql\n{m.sql.strip()}\n" for m in migrations]
    return "\n".join([*head, *body, "COMMIT;"]) + "\n"


def migrate(
    conn: psycopg.Connection[Any], schema: str, *, to: int | None = None
) -> list[Migration]:
    """Apply pending migrations to ``schema`` (up to version ``to``, when given: an older
    release's schema, for upgrade tests); returns what this call applied.

    ``conn`` must not be inside a transaction: the migration is its own.
    """
    q = queries(schema)
    with conn.transaction():
        conn.execute(q.migrate_lock, {"schema": schema})
        conn.execute(q.create_schema)
        conn.execute(q.create_migrations_table)
        todo = [m for m in pending(conn, schema) if to is None or m.version <= to]
        for m in todo:
            conn.execute(q.set_migration_search_path, {"search_path": _search_path(schema)})
            conn.execute(m.sql.encode())
            conn.execute(q.record_migration, {"version": m.version, "name": m.name})
    return todo


def check_migrated(conn: psycopg.Connection[Any], schema: str) -> None:
    """Raise ``NotMigrated`` unless ``schema`` has every migration this pgqueue ships."""
    check_versions(schema, applied_versions(conn, schema))


def check_versions(schema: str, applied: list[int]) -> None:
    done = set(applied)
    if not done:
        raise NotMigrated(
            f"schema {schema!r} has no pgqueue tables: run `pgqueue migrate --schema {schema}`"
        )
    missing = [m.version for m in available() if m.version not in done]
    if missing:
        raise NotMigrated(
            f"schema {schema!r} lacks migration(s) {', '.join(map(str, missing))}: run `pgqueue migrate --schema {schema}`"
        )
