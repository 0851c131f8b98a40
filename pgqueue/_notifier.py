"""LISTEN for new jobs on a dedicated connection and wake the matching producers.

Notifications only make pgqueue fast; polling keeps it correct. After every
(re)connection the notifier asks every producer to poll, because whatever was sent
while it was away is gone. ``listen=False`` (PgBouncer in transaction mode, where
LISTEN does not work) turns it off and the node runs on polling alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from psycopg import sql

from ._dsn import connection_options, scrub
from ._service import TRANSIENT, Service, _first_line, reconnect_delay

log = logging.getLogger("pgqueue.notifier")

# How long the connection may stay silent before a round trip checks it is alive.
HEALTH_INTERVAL = 15.0


class Notifier(Service):
    name = "notifier"

    def __init__(
        self,
        dsn: str,
        channels: list[str],
        *,
        on_notify: Callable[[str, str], None],
        on_connect: Callable[[], None],
        application_name: str = "pgqueue",
    ) -> None:
        super().__init__()
        self.dsn = dsn
        self.channels = channels
        self.application_name = application_name
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.connected = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, **connection_options(self.application_name)
                )
            except TRANSIENT as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "cannot LISTEN (%s); polling until it is back",
                        scrub(_first_line(exc), self.dsn),
                    )
                await self.pause(reconnect_delay(failures))
                continue
            try:
                for channel in self.channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                if failures:
                    log.info("listening for jobs again")
                failures = 0
                self.connected.set()
                self.on_connect()
                while not self._stopping:
                    async for note in conn.notifies(timeout=HEALTH_INTERVAL):
                        try:
                            self.on_notify(note.channel, note.payload)
                        except Exception:
                            log.exception("ignoring a notification that could not be handled")
                    async with asyncio.timeout(HEALTH_INTERVAL):
                        await conn.execute("SELECT 1")
            except (*TRANSIENT, TimeoutError) as exc:
                failures += 1
                log.warning(
                    "lost the LISTEN connection (%s); reconnecting",
                    scrub(_first_line(exc), self.dsn),
                )
                await self.pause(reconnect_delay(failures))
            finally:
                self.connected.clear()
                await _close(conn)


async def _close(conn: psycopg.AsyncConnection[object]) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 2)
