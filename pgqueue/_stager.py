"""Moves due ``scheduled`` and ``retryable`` jobs to ``available`` and wakes their queues.

Runs on every node: the statement locks with SKIP LOCKED, so nodes staging at the same
moment split the work instead of waiting on each other, and it notifies the queues it
staged so every node's producers claim at once.
"""

from __future__ import annotations

from collections.abc import Callable

from ._engine import Engine
from ._service import IntervalService


class Stager(IntervalService):
    name = "stager"

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float,
        on_staged: Callable[[str], None],
        limit: int = 5000,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.interval = interval
        self.limit = limit
        self.on_staged = on_staged

    async def tick(self) -> None:
        while True:
            staged = await self.engine.stage_jobs(self.limit)
            for queue in staged:
                self.on_staged(queue)
            if sum(staged.values()) < self.limit or self._stopping:
                return
