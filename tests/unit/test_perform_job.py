"""pgqueue.testing.perform_job: the job a test runs looks like one a worker claimed."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

import pytest

import pgqueue
from pgqueue.testing import perform_job


class Seen(pgqueue.Worker):
    name = "tests.unit.perform_job.seen"
    queue = "reports"
    max_attempts = 4

    def perform(self, job: pgqueue.Job) -> dict:
        return {
            "state": job.state,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "queue": job.queue,
            "args": job.args,
            "attempted_by": job.attempted_by,
            "times": (job.inserted_at, job.scheduled_at, job.attempted_at),
        }


class SeenAsync(Seen):
    name = "tests.unit.perform_job.seen_async"

    async def perform(self, job: pgqueue.Job) -> dict:  # type: ignore[override]
        return Seen.perform(self, job)


@pytest.mark.parametrize("worker", [Seen, SeenAsync])
def test_the_job_is_executing_attempted_by_this_process_and_timed(worker) -> None:
    before = datetime.now(UTC)
    seen = perform_job(worker, {"n": (1, 2)})
    after = datetime.now(UTC)
    assert seen["state"] == "executing"
    assert (seen["attempt"], seen["max_attempts"], seen["queue"]) == (1, 4, "reports")
    assert seen["args"] == {"n": [1, 2]}  # through JSON, as from a row
    # Shaped like a node's id, "name/suffix", with this process's default node name.
    name, suffix = seen["attempted_by"].rsplit("/", 1)
    assert (name, suffix) == (f"{socket.gethostname()}.{os.getpid()}", "perform_job")
    for at in seen["times"]:
        assert at is not None and at.tzinfo is not None and before <= at <= after


def test_fields_override_the_defaults() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    seen = perform_job(Seen, attempt=3, attempted_by="node-a", scheduled_at=at, queue="q")
    assert (seen["attempt"], seen["attempted_by"], seen["queue"]) == (3, "node-a", "q")
    assert seen["times"][1] == at
