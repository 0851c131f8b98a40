"""Helpers of the operations tests: the CLI as a subprocess, a worker whose log lines the
test can wait on, and a parser for the Prometheus text format."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from tests.helpers import wait_for

PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]
SECRET = "correct-horse-battery"


def run(*args: str, env: dict[str, str], code: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PGQUEUE, *args], env=env, capture_output=True, text=True, timeout=120)
    if code is not None:
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_inline(
    *args: str, env: dict[str, str], code: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """The same command in this process (click's runner): for long matrices of cases,
    where a fresh interpreter per case would cost seconds. Same result type as ``run``."""
    from click.testing import CliRunner
    from pgqueue.cli import main

    result = CliRunner(catch_exceptions=False).invoke(
        main, list(args), env=env, prog_name="pgqueue"
    )
    proc = subprocess.CompletedProcess(
        ["pgqueue", *args], result.exit_code, result.stdout, result.stderr
    )
    if code is not None:
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (no traceback, no password)."""
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, proc.stderr
    assert err.startswith("error: "), err
    assert SECRET not in proc.stderr + proc.stdout
    return err


def reset(conn: psycopg.Connection, schema: str) -> None:
    """Empty what ``db`` does not: queue controls and node rows."""
    for table in ("pgqueue_queues", "pgqueue_nodes", "pgqueue_leader"):
        conn.execute(
            sql.SQL("TRUNCATE {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        )


class Worker:
    """A ``pgqueue worker`` subprocess; its stderr lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(
                    f"worker exited {self.proc.returncode}:\n" + "\n".join(self.lines)
                )
            return next((m for line in list(self.lines) if (m := regex.search(line))), None)

        return wait_for(found, timeout=timeout, what=f"a worker log line matching {pattern!r}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.proc.kill()
        self._reader.join(5)
        return code


@contextmanager
def worker(*args: str, env: dict[str, str]) -> Iterator[Worker]:
    proc = subprocess.Popen(
        [*PGQUEUE, "worker", "--app", "tests.ops.app", "--poll-interval", "0.2", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    w = Worker(proc)
    try:
        yield w
    finally:
        w.stop()


# ---- Prometheus text format -------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(metric name, labels) → value, from a real HTTP GET of ``url``."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def eventually(check, timeout: float = 20.0, what: str = ""):  # type: ignore[no-untyped-def]
    """Retry ``check`` (which asserts) until it passes; re-raise its last failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
