"""Fault-injection fixtures: worker processes we can kill, and a PostgreSQL we can restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psycopg
import pytest
from psycopg import sql

from pgqueue import _migrate
from tests.apps import recording

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Starts ``tests.faults.node`` processes; kills what is left at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[str]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed in stop_all
        self._files.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.node",
                "--app",
                "tests.apps.recording",
                "--name",
                name,
                *args,
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def terminate(self, name: str, timeout: float = 60) -> int:
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def logs_tail(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.procs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in self._files:
            f.close()


def prepare(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        _migrate.migrate(conn, schema)
        conn.execute(sql.SQL(recording.CREATE_RUNS).format(schema=sql.Identifier(schema)))


@pytest.fixture
def workers(
    env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Workers]:
    w = Workers(env, tmp_path)
    yield w
    w.stop_all()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(w.logs_tail())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def runs_table(db: psycopg.Connection, schema: str) -> psycopg.Connection:
    db.execute(sql.SQL(recording.CREATE_RUNS).format(schema=sql.Identifier(schema)))
    db.execute("TRUNCATE runs")
    return db


def pg_env_for(base: dict[str, str], dsn: str, schema: str) -> dict[str, str]:
    return {**base, "DATABASE_URL": dsn, "PGQUEUE_SCHEMA": schema}


__all__ = ["Workers", "os", "pg_env_for", "prepare"]
