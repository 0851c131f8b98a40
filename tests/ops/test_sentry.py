"""Sentry (issue 4, item 4): ``SENTRY_DSN`` points at an HTTP server this test runs; the
envelopes that arrive carry one event per failed attempt with the right tags and
fingerprint, and the job's args only when the user opted in."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers import job_row, wait_for
from tests.ops.app import Boom, Ok
from tests.ops.support import reset, worker

ARG_SECRET = "hunter2-in-the-args"


class SentryStub(ThreadingHTTPServer):
    """Accepts what sentry-sdk sends and keeps the raw (decompressed) bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[bytes] = []
        self.paths: list[str] = []

    def events(self) -> list[dict[str, Any]]:
        """The ``event`` items of every envelope received so far."""
        events = []
        for body in list(self.bodies):
            lines = body.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if header.strip() and json.loads(header).get("type") == "event":
                    events.append(json.loads(payload))
        return events


class _Handler(BaseHTTPRequestHandler):
    server: SentryStub

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # only if sentry-sdk found it installed

            body = brotli.decompress(body)
        self.server.paths.append(self.path)
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sentry() -> Iterator[SentryStub]:
    server = SentryStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _clean(db, schema) -> None:
    reset(db, schema)


def _run_jobs(client, db, schema, env, sentry: SentryStub) -> tuple[list[dict], Any, list[str]]:
    boom = Boom.enqueue({"secret": ARG_SECRET, "n": 1}, client=client)  # 2 attempts
    ok = Ok.enqueue({"secret": ARG_SECRET}, client=client)
    port = sentry.server_address[1]
    env = {**env, "SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/42"}
    with worker("--queues", "ops:2", env=env) as w:
        wait_for(lambda: job_row(db, schema, boom.id)["state"] == "discarded", timeout=20)
        wait_for(lambda: job_row(db, schema, ok.id)["state"] == "completed", timeout=20)
        w.wait_line(rf"job {boom.id} .* discarded")
    # Stopping flushed the queue: everything that will ever arrive has arrived.
    return sentry.events(), boom, w.lines


def test_one_event_per_failed_attempt_with_tags_and_fingerprint_and_no_args(
    client, db, schema, env, sentry
) -> None:
    events, boom, lines = _run_jobs(client, db, schema, env, sentry)
    assert all(p == "/api/42/envelope/" for p in sentry.paths), sentry.paths
    assert len(events) == 2, [
        e.get("tags") for e in events
    ]  # not 3: the discarded log line is not an event
    by_attempt = {e["tags"]["attempt"]: e for e in events}
    assert set(by_attempt) == {"1", "2"}
    for attempt, event in by_attempt.items():
        tags = event["tags"]
        assert tags["queue"] == "ops" and tags["worker"] == Boom.name
        assert tags["job_id"] == str(boom.id)
        assert tags["outcome"] == ("retryable" if attempt == "1" else "discarded")
        assert event["fingerprint"] == ["pgqueue", Boom.name, "builtins.ValueError"]
        exc = event["exception"]["values"][-1]
        assert exc["type"] == "ValueError" and f"boom on attempt {attempt}" in exc["value"]
        frames = exc["stacktrace"]["frames"]
        assert any(f.get("function") == "perform" for f in frames)
        assert all("vars" not in f for f in frames)
        assert "args" not in event["contexts"]["pgqueue job"]
    raw = b"".join(sentry.bodies)
    assert ARG_SECRET.encode() not in raw
    # The text log has its one line per outcome meanwhile.
    outcome = [line for line in lines if f"job {boom.id} {Boom.name} queue=ops" in line]
    assert len(outcome) == 2 and "attempt=2/2 discarded in" in outcome[1]


def test_args_are_sent_only_when_opted_in(client, db, schema, env, sentry) -> None:
    env = {**env, "PGQUEUE_SENTRY_SEND_ARGS": "1"}
    events, _, _ = _run_jobs(client, db, schema, env, sentry)
    assert len(events) == 2
    for event in events:
        assert event["contexts"]["pgqueue job"]["args"] == {"secret": ARG_SECRET, "n": 1}
