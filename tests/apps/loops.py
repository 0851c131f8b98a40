"""A worker that writes down which event loop ran it (``pgqueue worker --loop``)."""

from __future__ import annotations

import asyncio

import pgqueue


class WhichLoop(pgqueue.Worker):
    name = "tests.which_loop"

    async def perform(self, job: pgqueue.Job) -> None:
        await asyncio.sleep(0)  # suspends once: the job really runs as a task of that loop
        job.update_meta({"loop": type(asyncio.get_running_loop()).__module__})
