"""AmqpFanout: publish a job's args as a persistent JSON event on a fanout exchange.

pika is imported here, lazily, and nowhere in the core. Each worker thread keeps its own
``BlockingConnection`` (pika connections are not thread-safe) with one channel in
publisher-confirm mode, declaring the durable fanout exchange once per channel. A
publish returns only when the broker confirmed it; a nack, an unroutable mandatory
message or a connection lost before the confirm is a failed attempt, retried. The
message id is the job id, so consumers can drop a redelivered duplicate.

A connection that sat idle may have been closed by a broker restart or a missed
heartbeat: when a reused connection fails, the thread reconnects and publishes once
more before counting the failure. (A publish that reached the broker but lost its
confirm may so be delivered twice, which is what the message id is for.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .._job import Job
from ._breaker import ANSWERED, TRANSPORT
from ._config import AmqpSettings, password_of
from ._errors import DestinationRejected, DestinationUnavailable, first_line, scrub
from ._pipeline import CHAIN_KEYS, BuiltinWorker, enqueue_next, guarded

log = logging.getLogger("pgqueue.builtins.amqp")

# Args keys that steer the publish and are not part of the event.
CONTROL_KEYS = (*CHAIN_KEYS, "exchange")
# Reply codes meaning "this will not work until someone changes something".
REFUSAL_CODES = frozenset({402, 403, 404, 405, 406, 530})


@dataclass
class _Link:
    connection: Any
    channel: Any
    declared: set[str] = field(default_factory=set)


_local = threading.local()


def _links() -> dict[str, _Link]:
    links = getattr(_local, "links", None)
    if links is None:
        links = _local.links = {}
    return links


def _parameters(url: str) -> Any:
    import pika

    params = pika.URLParameters(url)
    query = url.partition("?")[2]
    # Fail fast and let the job's backoff and the breaker handle waiting.
    if "socket_timeout" not in query:
        params.socket_timeout = 5
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = 30
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    params.client_properties = {"connection_name": f"pgqueue {os.getpid()}"}
    return params


def _connect(settings: AmqpSettings) -> _Link:
    import pika

    connection = pika.BlockingConnection(_parameters(settings.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
    except BaseException:
        _close(connection)
        raise
    return _Link(connection, channel)


def _close(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:
        pass


def drop_connection(url: str) -> None:
    """Close this thread's connection to ``url`` (the next publish reconnects)."""
    link = _links().pop(url, None)
    if link is not None:
        _close(link.connection)


def publish(
    settings: AmqpSettings,
    body: bytes,
    *,
    exchange: str,
    message_id: str,
    correlation_id: str | None = None,
) -> bool:
    """Publish ``body`` and wait for the broker's confirm. Returns True when it reused
    this thread's connection, False when it had to connect."""
    import pika

    properties = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        correlation_id=correlation_id,
        timestamp=int(time.time()),
        app_id="pgqueue",
    )
    for attempt in (1, 2):
        links = _links()
        link = links.get(settings.url)
        reused = link is not None and link.connection.is_open and link.channel.is_open
        if not reused:
            drop_connection(settings.url)
            link = links[settings.url] = _connect(settings)
        assert link is not None
        try:
            if exchange not in link.declared:
                link.channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
                link.declared.add(exchange)
            link.channel.basic_publish(
                exchange, "", body, properties=properties, mandatory=settings.mandatory
            )
            return reused
        except Exception as exc:
            if not _keeps_channel(exc):
                drop_connection(settings.url)
            if reused and attempt == 1 and classify(exc) == TRANSPORT:
                log.info(
                    "connection to %s failed (%s); reconnecting",
                    settings.destination,
                    first_line(exc),
                )
                continue
            raise
    raise AssertionError("unreachable")


def _keeps_channel(exc: BaseException) -> bool:
    import pika.exceptions as pe

    return isinstance(exc, pe.UnroutableError | pe.NackError)


def classify(exc: BaseException) -> str:
    """What ``exc`` says about the broker: ``transport``, ``answered`` or ``other``."""
    import pika.exceptions as pe

    if isinstance(
        exc, pe.ProbableAuthenticationError | pe.ProbableAccessDeniedError | pe.AuthenticationError
    ):
        return ANSWERED
    if isinstance(exc, pe.ConnectionClosedByBroker | pe.ChannelClosedByBroker):
        return ANSWERED if exc.reply_code in REFUSAL_CODES else TRANSPORT
    if isinstance(exc, pe.UnroutableError):
        return ANSWERED
    if isinstance(exc, pe.AMQPError | OSError):
        return TRANSPORT  # lost or refused connection, nack, blocked, wrong state
    return "other"


def translate(exc: Exception, settings: AmqpSettings) -> Exception:
    """A pika error as a one-line pgqueue error naming the broker; others unchanged."""
    import pika.exceptions as pe

    where = settings.destination
    text = scrub(first_line(exc), password_of(settings.url))
    said = f"{type(exc).__name__}: {text}"
    if isinstance(exc, pe.ProbableAuthenticationError | pe.AuthenticationError) or (
        isinstance(exc, pe.ConnectionClosedByBroker) and exc.reply_code == 403
    ):
        return DestinationRejected(
            f"{where} rejected the credentials ({said}); check PGQUEUE_AMQP_URL"
        )
    if isinstance(exc, pe.ProbableAccessDeniedError) or (
        isinstance(exc, pe.ConnectionClosedByBroker) and exc.reply_code == 530
    ):
        return DestinationRejected(
            f"{where} denied access to the vhost ({said}); check PGQUEUE_AMQP_URL"
        )
    if isinstance(exc, pe.ChannelClosedByBroker) and exc.reply_code in REFUSAL_CODES:
        return DestinationRejected(
            f"{where} refused the publish ({said}); check PGQUEUE_AMQP_EXCHANGE "
            "(an existing exchange of that name must be a durable fanout)"
        )
    if isinstance(exc, pe.UnroutableError):
        return DestinationRejected(
            f"{where}: no queue is bound to the exchange and PGQUEUE_AMQP_MANDATORY is on"
        )
    if isinstance(exc, pe.NackError):
        return DestinationUnavailable(f"{where} did not confirm the message (nack)")
    if classify(exc) == TRANSPORT:
        return DestinationUnavailable(f"cannot publish to {where}: {said}")
    return exc


def event_body(job: Job) -> bytes:
    """The JSON published for ``job``: its args without the chain's control keys."""
    event = {k: v for k, v in job.args.items() if k not in CONTROL_KEYS}
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


class AmqpFanout(BuiltinWorker):
    """Args: the event (any JSON object); ``exchange`` overrides PGQUEUE_AMQP_EXCHANGE.
    Meta after it ran: exchange, message_id."""

    name = "pgqueue.builtins.AmqpFanout"
    timeout = 120.0

    def perform(self, job: Job) -> None:
        settings = AmqpSettings.from_env(os.environ)
        exchange = job.args.get("exchange") or settings.exchange
        chain = job.args.get("pipeline")
        root = chain.get("id") if isinstance(chain, dict) else None
        body = event_body(job)
        try:
            with guarded(job, settings.destination, classify, lambda e: translate(e, settings)):
                publish(
                    settings,
                    body,
                    exchange=str(exchange),
                    message_id=str(job.id),
                    correlation_id=None if root is None else str(root),
                )
        except Exception as exc:
            translated = translate(exc, settings)
            if translated is exc:
                raise
            raise translated from None
        job.update_meta({"exchange": exchange, "message_id": str(job.id)})
        following = enqueue_next(job, job.args)
        if following is not None:
            job.update_meta({"next_job_id": following.id})
