"""Every SQL statement pgqueue runs, as named queries in the ``.sql`` files beside this one.

A file holds blocks that start with ``-- name: <query>``. ``{schema}`` is replaced by the
quoted schema identifier (never by string formatting of user input: it goes through
``psycopg.sql.Identifier``). A block whose name ends in ``_columns`` or ``_fragment`` is
not a query but a piece shared by several: ``{job_columns}`` in a query is replaced by
that block. Literal braces are written ``{{`` and ``}}``. Parameters use ``%(name)s``.

Queries are composed once per schema and kept as strings, so the hot path pays nothing
for composition and psycopg can prepare them.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@cache
def _raw() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _NAME.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in blocks:
                raise RuntimeError(f"query {name!r} is defined twice (second in {entry.name})")
            blocks[name] = body.strip().rstrip(";")
    return blocks


class Queries:
    """The named queries, composed for one schema: ``Queries("public").fetch_jobs``."""

    def __init__(self, schema: str) -> None:
        raw = _raw()
        schema_id = sql.Identifier(schema)
        pieces = {
            name: sql.SQL(body).format(schema=schema_id)
            for name, body in raw.items()
            if name.endswith(("_columns", "_fragment"))
        }
        self.schema = schema
        self._text: dict[str, str] = {
            name: sql.SQL(body).format(schema=schema_id, **pieces).as_string()
            for name, body in raw.items()
            if name not in pieces
        }

    def __getattr__(self, name: str) -> str:
        try:
            return self._text[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None

    def table(self, name: str) -> str:
        """``schema.name`` quoted, for a ``%(table)s::regclass`` parameter."""
        return sql.Identifier(self.schema, name).as_string()

    def names(self) -> list[str]:
        return sorted(self._text)


@cache
def queries(schema: str) -> Queries:
    return Queries(schema)
