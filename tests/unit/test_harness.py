"""The test harness itself: a SIGTERM'd test run stops the servers its fixtures started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

INNER_CONFTEST = """
from tests.helpers import stop_on_sigterm


def pytest_sessionstart(session):
    stop_on_sigterm()
"""

# A session fixture that starts a "server" in a session of its own, as the SeaweedFS and
# RabbitMQ fixtures do, and a test that outlives the patience of whoever runs it.
INNER_TEST = """
import os, signal, subprocess, time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def server():
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    Path(os.environ["SERVER_PID_FILE"]).write_text(str(proc.pid))
    yield proc
    Path(os.environ["SERVER_PID_FILE"] + ".stopping").touch()
    time.sleep(1)  # a server takes a moment to shut down
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()


def test_long(server):
    Path(os.environ["SERVER_PID_FILE"] + ".running").touch()
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signals", [1, 2], ids=["once", "again-during-teardown"])
def test_a_sigterm_d_run_tears_its_session_fixtures_down(tmp_path: Path, signals: int) -> None:
    """``again-during-teardown``: a signal to the whole process group reaches pytest
    both directly and through a wrapper that passes it on (the embedded PostgreSQL's,
    when no DATABASE_URL is set): the second must not cut the teardown short."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent(INNER_CONFTEST))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST))
    pid_file = tmp_path / "server.pid"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SERVER_PID_FILE": str(pid_file)}
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = 0
    try:
        running = Path(f"{pid_file}.running")
        wait_for(running.exists, timeout=60, what="the inner run's test")
        server = int(pid_file.read_text())
        run.send_signal(signal.SIGTERM)
        if signals == 2:
            stopping = Path(f"{pid_file}.stopping")
            wait_for(stopping.exists, timeout=60, what="the inner run's teardown")
            run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
        assert not _alive(server), f"the server outlived the run:\n{out.decode()[-2000:]}"
        assert run.returncode != 0  # interrupted, not passed
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if server and _alive(server):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server, signal.SIGKILL)
