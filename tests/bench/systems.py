"""The job queues under test, each in its own database and (for peers) its own venv.

A ``System`` wraps one adapter of ``tests.bench.peers``: it runs adapter commands as
subprocesses with the right interpreter, spawns and stops worker processes, and polls
the system's table from the bench's own connection, as W2 defines ("a separate
connection, polling every 0.2 s, sees no unfinished job").
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.bench import drain

ROOT = Path(__file__).resolve().parents[2]
BOUND = 240.0  # seconds: every W2 measurement gives up after this (PEERS.md)
# Every measurement clears its tables and then checkpoints, before its own (untimed)
# inserts. The runs write gigabytes of WAL, so PostgreSQL checkpoints every ~20 s, and
# the first change to each page after a checkpoint starts writes the whole page to the
# WAL: a measurement that a checkpoint happened to start in paid for it (W1 bulk read
# 43 % of COPY in such a full run, 54 % run alone). Starting each one just after a
# checkpoint, whichever system it measures, one starts inside it only if it and its own
# prefill write max_wal_size (1 GB by default) of WAL.
CHECKPOINT = "CHECKPOINT"


class BenchError(RuntimeError):
    """A workload could not be measured (a worker died, a bound was hit, a peer failed)."""


class BoundHit(BenchError):
    """The bound ran out first; ``done`` jobs had finished by then (a lower bound)."""

    def __init__(self, message: str, done: int, seconds: float) -> None:
        super().__init__(message)
        self.done = done
        self.seconds = seconds


def database_dsn(server_dsn: str, name: str) -> str:
    """The DSN of database ``name`` on ``server_dsn``'s server, created if missing."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_dsn, name)


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name``, in the same form (asyncpg takes URLs only)."""
    parts = urlsplit(dsn)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path="/" + name))
    return make_conninfo(dsn, dbname=name)


def base_database(server_dsn: str) -> str:
    return conninfo_to_dict(server_dsn).get("dbname") or "postgres"


def venv_python(venv: str | None) -> str | None:
    """The interpreter of ``venv`` (relative to the repository), None if not installed."""
    if venv is None:
        return sys.executable
    path = ROOT / venv / "bin" / "python"
    return str(path) if path.exists() else None


@dataclass
class System:
    name: str
    adapter: ModuleType
    python: str
    dsn: str
    log_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def load(cls, name: str, server_dsn: str, log_dir: Path) -> System:
        adapter = importlib.import_module(f"tests.bench.peers.{name}_")
        python = venv_python(adapter.VENV)
        if python is None:
            raise BenchError(
                f"{name}: {adapter.VENV} is missing; run python -m tests.bench --install-peers"
            )
        db = "pgqueue_bench" if name == "pgqueue" else f"pgqueue_bench_{name}"
        system = cls(name, adapter, python, database_dsn(server_dsn, db), log_dir)
        installed = system.scalar(f"SELECT to_regclass('{adapter.INSTALLED_TABLE}') IS NOT NULL")
        if not installed or getattr(adapter, "SETUP_ALWAYS", False):
            system.call("setup", timeout=120)
        return system

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.adapter.KINDS)

    # ---- database ------------------------------------------------------------------

    def execute(self, *statements: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def scalar(self, query: str) -> Any:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]

    def reset(self, *instead: str) -> None:
        """Clear the system's tables (or run ``instead``), then checkpoint (see CHECKPOINT)."""
        self.execute(*(instead or self.adapter.RESET_SQL), CHECKPOINT)

    def analyze(self) -> None:
        self.execute(f"ANALYZE {self.adapter.TABLE}")

    # ---- adapter commands -------------------------------------------------------------

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(ROOT)
        env.pop("VIRTUAL_ENV", None)
        return {**env, **(extra or {})}

    def call(self, command: str, timeout: float = BOUND, **kwargs: Any) -> dict[str, Any]:
        """Run adapter ``command`` in the system's venv; returns its JSON result."""
        argv = [self.python, "-m", "tests.bench.peers", self.name, command]
        argv.append(json.dumps({"dsn": self.dsn, **kwargs}))
        try:
            proc = subprocess.run(
                argv, cwd=ROOT, env=self._env(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name} {command}: no answer within {timeout:g} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            self._log(f"{command}.err", proc.stderr)
            raise BenchError(f"{self.name} {command} failed: {tail[0]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def _log(self, what: str, text: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{self.name}-{what}.log", "a") as f:
            f.write(text)

    # ---- workers -------------------------------------------------------------------

    def worker_argv(self, concurrency: int, kind: str) -> list[str]:
        custom = getattr(self.adapter, "worker_argv", None)
        if custom is not None:
            return custom(self.python, self.dsn, concurrency, kind)
        args = json.dumps({"dsn": self.dsn, "concurrency": concurrency, "kind": kind})
        return [self.python, "-m", "tests.bench.peers", self.name, "work", args]

    def spawn_workers(
        self, processes: int, concurrency: int, kind: str, env: dict[str, str] | None = None
    ) -> list[subprocess.Popen[bytes]]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{self.name}-workers.log", "ab")  # noqa: SIM115
        procs = [
            subprocess.Popen(
                self.worker_argv(concurrency, kind),
                cwd=ROOT,
                env=self._env(env),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            for _ in range(processes)
        ]
        log.close()
        self.workers.extend(procs)
        return procs

    def stop_workers(self, grace: float = 15.0) -> None:
        procs, self.workers = self.workers, []
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def time_first_job(
        self, concurrency: int, kind: str, bound: float = 60.0, poll: float = 0.002
    ) -> float:
        """Seconds from spawning one worker process to the end of the one job queued
        (prefilled by the caller): what W2's clock counts before any drain, polled every
        ``poll`` s from a connection opened before the spawn."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            statement = self.adapter.UNFINISHED_SQL
            t0 = time.monotonic()
            self.spawn_workers(1, concurrency, kind)
            try:
                while conn.execute(statement).fetchone()[0]:
                    if time.monotonic() > t0 + bound:
                        raise BenchError(f"{self.name}: no job done {bound:g} s after the spawn")
                    self._check_workers("before its first job")
                    time.sleep(poll)
                return time.monotonic() - t0
            finally:
                self.stop_workers()

    def _check_workers(self, when: str) -> None:
        """Raise once every worker process has exited: nothing will finish any more."""
        if self.workers and all(p.poll() is not None for p in self.workers):
            raise BenchError(
                f"{self.name}: worker exited ({self.workers[0].returncode}) {when}; "
                f"see {self.log_dir}"
            )

    def wait_drained(self, n: int, t0: float, bound: float = BOUND) -> drain.Drain:
        """Poll from the bench's own connection until none of the ``n`` jobs is unfinished
        (``drain.wait``: PEERS.md's clock, and the one within ``drain.FINE`` of the last
        completion); gives up after ``bound`` seconds from ``t0`` or when every worker
        process has exited."""

        def check(left: int, now: float) -> None:
            if now > t0 + bound:
                raise BoundHit(
                    f"{self.name}: {left} of {n} job(s) unfinished after {bound:g} s",
                    n - left,
                    now - t0,
                )
            self._check_workers(f"with {left} job(s) unfinished")

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            statement = self.adapter.UNFINISHED_SQL
            return drain.wait(lambda: conn.execute(statement).fetchone()[0], n, t0, check=check)
