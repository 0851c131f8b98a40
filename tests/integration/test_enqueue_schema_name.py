"""The schema name must leave room for its notification channels (63-byte identifiers)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

import pgqueue
from pgqueue import ConfigError, _migrate
from pgqueue._client import SCHEMA_MAX_BYTES
from pgqueue._coordination import control_channel
from pgqueue._engine import channel

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


class Plain(pgqueue.Worker):
    queue = "names"

    def perform(self, job: pgqueue.Job) -> None:
        return None


def test_the_limit_is_what_the_longest_channel_suffix_leaves() -> None:
    assert SCHEMA_MAX_BYTES == 63 - len(".pgqueue_control") == 47
    assert len(control_channel("")) >= len(channel(""))


@pytest.fixture
def longest(dsn: str) -> Iterator[str]:
    """A migrated schema of exactly SCHEMA_MAX_BYTES bytes in UTF-8 (two-byte letters)."""
    name = ("é" * SCHEMA_MAX_BYTES)[: SCHEMA_MAX_BYTES // 2] + "x"
    assert len(name.encode()) == SCHEMA_MAX_BYTES
    with psycopg.connect(dsn, autocommit=True) as conn:
        _migrate.migrate(conn, name)
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def test_the_longest_schema_enqueues_and_notifies(dsn: str, longest: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        for name in (channel(longest), control_channel(longest)):
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
        with pgqueue.Client(dsn, schema=longest) as client:
            job = Plain.enqueue({"n": 1}, client=client)
            client.pause_queue("names")
        got = {(n.channel, n.payload) for n in listener.notifies(timeout=2.0, stop_after=2)}
    assert job.id and (channel(longest), "names") in got
    assert {c for c, _ in got} == {channel(longest), control_channel(longest)}


@pytest.mark.parametrize(
    "name",
    ["a" * (SCHEMA_MAX_BYTES + 1), "é" * 24, "a" * 51, "a" * 63],
    ids=["ascii-48", "utf8-48-bytes", "ascii-51", "ascii-63"],
)
def test_a_schema_too_long_for_its_channels_is_refused_up_front(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the Client accepted up to 63 characters and every enqueue then failed in
    # the server (pg_notify: channel name too long).
    with pytest.raises(ConfigError, match=r"at most 47 bytes in UTF-8.*63-byte identifier"):
        pgqueue.Client(UNREACHABLE, schema=name)
    monkeypatch.setenv("PGQUEUE_SCHEMA", name)
    with pytest.raises(ConfigError, match="at most 47 bytes"):
        pgqueue.Client(UNREACHABLE)
    with pytest.raises(ConfigError, match="at most 47 bytes"):
        pgqueue.Node(UNREACHABLE, schema=name)  # its LISTEN would truncate the channels


@pytest.mark.parametrize("command", [["migrate"], ["enqueue", "some.Worker"], ["inspect"]])
def test_the_cli_refuses_a_schema_too_long_as_bad_usage(
    dsn: str, env: dict[str, str], command: list[str]
) -> None:
    name = "b" * (SCHEMA_MAX_BYTES + 1)
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", *command, "--dsn", dsn, "--schema", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "at most 47 bytes" in result.stderr and "Traceback" not in result.stderr
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
    assert row is None  # migrate installed nothing
