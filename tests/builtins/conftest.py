"""Fixtures of the built-in workers' tests: real S3 (SeaweedFS) and real RabbitMQ.

SeaweedFS is started once per session on free ports. RabbitMQ is the machine's broker
(``$AMQP_URL``, default guest@127.0.0.1:5672) for the ordinary tests and a private node
of this session for the outage tests, which stop and start it. On CI (``CI=true``) a
missing broker fails the tests; elsewhere it skips them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import pgqueue
from pgqueue import _client
from pgqueue.builtins import _breaker
from tests.builtins.servers import PrivateRabbit, Seaweed

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    _breaker.reset_breakers()
    yield
    _breaker.reset_breakers()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop(kill=True)  # throwaway data: no need to wait for a clean shutdown


@pytest.fixture
def bucket(seaweed: Seaweed) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    seaweed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def b2_env(seaweed: Seaweed, bucket: str) -> dict[str, str]:
    return {
        "PGQUEUE_B2_ENDPOINT": seaweed.endpoint,
        "PGQUEUE_B2_BUCKET": bucket,
        "PGQUEUE_B2_REGION": "us-east-1",
        "PGQUEUE_B2_KEY_ID": seaweed.access_key,
        "PGQUEUE_B2_APPLICATION_KEY": seaweed.secret_key,
        "PGQUEUE_B2_CONNECT_TIMEOUT": "2",
        "PGQUEUE_B2_READ_TIMEOUT": "30",
    }


@pytest.fixture(scope="session")
def amqp_url() -> str:
    import pika

    url = os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        _missing(f"RabbitMQ is not reachable at $AMQP_URL or {DEFAULT_AMQP_URL}: {exc!r}")
    return url


@pytest.fixture(scope="session")
def private_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    reason = PrivateRabbit.available()
    if reason:
        _missing(reason)
    broker = PrivateRabbit(tmp_path_factory.mktemp("rabbit"))
    try:
        broker.start()
    except AssertionError as exc:
        broker.stop()
        pytest.fail(f"could not start a private RabbitMQ node: {exc}\n{broker.log_tail()}")
    yield broker
    broker.stop()


class Fanout:
    """A fanout exchange of one test with two durable queues bound to it."""

    def __init__(self, url: str) -> None:
        tag = uuid.uuid4().hex[:12]
        self.url = url
        self.exchange = f"pgqueue.test.{tag}"
        self.queues = (f"pgqueue.test.{tag}.a", f"pgqueue.test.{tag}.b")

    def declare(self) -> None:
        with self._channel() as ch:
            ch.exchange_declare(self.exchange, exchange_type="fanout", durable=True)
            for q in self.queues:
                ch.queue_declare(q, durable=True)
                ch.queue_bind(q, self.exchange)

    def drain(self, queue: str) -> list[tuple[Any, bytes]]:
        """Every message waiting in ``queue`` (acknowledged), as (properties, body)."""
        got = []
        with self._channel() as ch:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return got
                got.append((props, body))

    def delete(self) -> None:
        with contextlib.suppress(Exception), self._channel() as ch:
            for q in self.queues:
                ch.queue_delete(q)
            ch.exchange_delete(self.exchange)

    @contextlib.contextmanager
    def _channel(self) -> Iterator[Any]:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield conn.channel()
        finally:
            with contextlib.suppress(Exception):
                conn.close()


@pytest.fixture
def fanout(amqp_url: str) -> Iterator[Fanout]:
    f = Fanout(amqp_url)
    f.declare()
    yield f
    f.delete()


@pytest.fixture
def configured(dsn: str, schema: str, db: Any) -> Iterator[pgqueue.Client]:
    """``pgqueue.configure`` for this module's schema (the built-ins enqueue next steps
    through the default client), restored afterwards."""
    old = _client._default
    client = pgqueue.Client(dsn, schema=schema)
    _client._default = client
    yield client
    _client._default = old
    client.close()


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch):
    """``setenv(mapping)``: set these environment variables for this test only."""

    def apply(values: Mapping[str, str]) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)

    return apply


class WorkerProcess:
    """``pgqueue worker --app APP`` as a child process, logging to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        queues: str = "default:10",
        app: str = "pgqueue.builtins",
    ):
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                *PGQUEUE,
                "worker",
                "--app",
                app,
                "--queues",
                queues,
                "--poll-interval",
                "0.2",
                "--shutdown-grace",
                "5",
            ],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(env: Mapping[str, str], **kwargs: Any) -> WorkerProcess:
        w = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
