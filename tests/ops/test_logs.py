"""Logging (issue 4, item 5): one line per job outcome with job id, worker, queue,
attempt and duration; ``--log-format json`` makes every line a JSON object."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pgqueue.integrations.logging import JsonFormatter, configure
from tests.helpers import job_row, wait_for
from tests.ops.app import Boom, Ok
from tests.ops.support import reset, worker


@pytest.fixture(autouse=True)
def _clean(db, schema) -> None:
    reset(db, schema)


def test_json_log_format_one_object_per_line_one_line_per_outcome(client, db, schema, env) -> None:
    ok = Ok.enqueue({}, client=client)
    boom = Boom.enqueue({}, client=client)
    with worker("--queues", "ops:2", "--log-format", "json", env=env) as w:
        wait_for(lambda: job_row(db, schema, boom.id)["state"] == "discarded", timeout=20)
        w.wait_line(rf'"job_id": {boom.id}, .*"outcome": "discarded"')
    records = [json.loads(line) for line in w.lines]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    outcomes = [r for r in records if r["logger"] == "pgqueue.jobs"]
    assert sorted((r["job_id"], r["attempt"], r["outcome"]) for r in outcomes) == sorted(
        [(ok.id, 1, "completed"), (boom.id, 1, "retryable"), (boom.id, 2, "discarded")]
    )
    for r in outcomes:
        assert r["queue"] == "ops" and r["worker"] in (Ok.name, Boom.name)
        assert r["duration_ms"] >= 0 and r["max_attempts"] in (2, 20) and r["node"]
    failed = next(r for r in outcomes if r["outcome"] == "discarded")
    assert (failed["level"], failed["error"]) == ("error", "ValueError")
    assert failed["error_message"] == "boom on attempt 2 (no secret)"
    assert failed["message"].startswith(
        f"job {boom.id} {Boom.name} queue=ops attempt=2/2 discarded"
    )


def test_json_formatter_keeps_exceptions_on_one_line() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure("info", "json", stream=stream)
    try:
        try:
            raise RuntimeError("multi\nline")
        except RuntimeError:
            logging.getLogger("pgqueue.test").exception("it broke")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert (
            record["message"] == "it broke" and "RuntimeError: multi\nline" in record["exception"]
        )
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], root.level = saved
