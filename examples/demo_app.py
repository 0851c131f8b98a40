"""The demo's workers: what ``pgqueue worker --app examples.demo_app`` runs.

A mix that shows every path: jobs that succeed, fail then succeed, always fail (and
end in the dead letter), a scheduled report and a unique digest.
"""

from __future__ import annotations

import asyncio

import pgqueue


class Thumbnail(pgqueue.Worker):
    """An async job that succeeds and records its result on the job."""

    queue = "media"

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(0.05)
        job.update_meta({"thumbnail": f"{job.args['image']}.thumb.png"})


class Charge(pgqueue.Worker):
    """A flaky payment API: the first two attempts time out, the third succeeds."""

    def backoff(self, job: pgqueue.Job) -> float:
        return 1.0  # the default starts at 15 s; a demo has no time for that

    def perform(self, job: pgqueue.Job) -> None:
        if job.attempt <= 2:
            raise ConnectionError("payment API timed out")


class Import(pgqueue.Worker):
    """Input that can never be parsed: three attempts, then the dead letter."""

    max_attempts = 3

    def backoff(self, job: pgqueue.Job) -> float:
        return 0.5

    def perform(self, job: pgqueue.Job) -> None:
        raise ValueError(f"cannot parse {job.args['file']}: unexpected end of data")


@pgqueue.worker(queue="default")
def send_report(job: pgqueue.Job) -> None:
    """A function worker, enqueued to run a few seconds from now."""


class Digest(pgqueue.Worker):
    """At most one digest per user per five minutes, however often it is asked for."""

    unique = pgqueue.Unique(period=300, keys=["user_id"])

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(0.01)
