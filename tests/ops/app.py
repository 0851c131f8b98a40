"""Workers for the operations tests: one that succeeds, one that always fails, one that
runs until cancelled. All in queue ``ops``; failures retry at once (backoff 0)."""

from __future__ import annotations

import asyncio

import pgqueue


class Ok(pgqueue.Worker):
    queue = "ops"

    async def perform(self, job: pgqueue.Job) -> None:
        if job.args.get("sleep"):
            await asyncio.sleep(job.args["sleep"])


class Boom(pgqueue.Worker):
    """Raises ValueError on every attempt; ``max_attempts`` 2 ends it discarded."""

    queue = "ops"
    max_attempts = 2

    def perform(self, job: pgqueue.Job) -> None:
        secret = job.args.get("secret")  # a local holding an arg: must not reach Sentry
        raise ValueError(f"boom on attempt {job.attempt} ({'with' if secret else 'no'} secret)")

    def backoff(self, job: pgqueue.Job) -> float:
        return 0.0


class Hold(pgqueue.Worker):
    """Runs until cancelled (or 60 s)."""

    queue = "ops"

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(job.args.get("sleep", 60))
