"""AmqpFanout against a real RabbitMQ: confirms, persistence, message ids, reconnects."""

from __future__ import annotations

import json
import threading
import uuid

import pika
import pytest

import pgqueue
from pgqueue.builtins import AmqpFanout, DestinationRejected, DestinationUnavailable, breakers
from pgqueue.builtins._amqp import drop_connection, publish
from pgqueue.builtins._config import AmqpSettings
from pgqueue.testing import drain_queue
from tests.builtins.conftest import Fanout
from tests.builtins.servers import free_port
from tests.helpers import job_row


def fan(job_id: int, args: dict) -> pgqueue.Job:
    job = pgqueue.Job(id=job_id, worker=AmqpFanout.name, args=args, attempt=1)
    AmqpFanout().perform(job)
    return job


def test_every_bound_queue_gets_the_persistent_event_with_the_job_id(
    fanout: Fanout, setenv, client, db, schema
) -> None:
    setenv({"PGQUEUE_AMQP_URL": fanout.url, "PGQUEUE_AMQP_EXCHANGE": fanout.exchange})
    event = {"file": {"sha256": "ab" * 32, "size": 3}, "context": {"upload_id": 9}}
    job = AmqpFanout.enqueue(event, client=client)
    assert drain_queue(client, "default") == {"completed": 1}
    assert job_row(db, schema, job.id)["meta"] == {
        "exchange": fanout.exchange,
        "message_id": str(job.id),
    }
    for queue in fanout.queues:
        ((props, body),) = fanout.drain(queue)
        assert json.loads(body) == event
        assert props.message_id == str(job.id)
        assert props.delivery_mode == 2 and props.content_type == "application/json"


def test_the_exchange_is_declared_a_durable_fanout(fanout: Fanout, setenv) -> None:
    exchange = f"pgqueue.test.{uuid.uuid4().hex[:12]}"
    setenv({"PGQUEUE_AMQP_URL": fanout.url})
    try:
        fan(1, {"exchange": exchange, "n": 1})
        conn = pika.BlockingConnection(pika.URLParameters(fanout.url))
        ch = conn.channel()
        ch.exchange_declare(exchange, exchange_type="fanout", durable=True)  # same: fine
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
            ch.exchange_declare(exchange, exchange_type="fanout", durable=False)
        assert err.value.reply_code == 406
        conn.close()
    finally:
        ch = pika.BlockingConnection(pika.URLParameters(fanout.url)).channel()
        ch.exchange_delete(exchange)
        ch.connection.close()


def test_the_connection_is_reused_per_thread(fanout: Fanout) -> None:
    settings = AmqpSettings(url=fanout.url, exchange=fanout.exchange)
    drop_connection(fanout.url)  # an earlier test in this thread may have left one
    reused = [
        publish(settings, b"{}", exchange=fanout.exchange, message_id=str(i)) for i in range(3)
    ]
    assert reused == [False, True, True]
    other: list[bool] = []
    t = threading.Thread(
        target=lambda: other.append(
            publish(settings, b"{}", exchange=fanout.exchange, message_id="9")
        )
    )
    t.start()
    t.join()
    assert other == [False]  # another thread opens its own
    assert len(fanout.drain(fanout.queues[0])) == 4


def test_a_broker_restart_costs_a_reconnect_not_a_failure(private_rabbit) -> None:
    f = Fanout(private_rabbit.url)
    f.declare()
    settings = AmqpSettings(url=private_rabbit.url, exchange=f.exchange)
    try:
        assert publish(settings, b'{"n":1}', exchange=f.exchange, message_id="1") is False
        assert publish(settings, b'{"n":2}', exchange=f.exchange, message_id="2") is True
        private_rabbit.stop_app()
        private_rabbit.start_app()
        # The thread's connection died with the broker: the publish reconnects by itself.
        publish(settings, b'{"n":3}', exchange=f.exchange, message_id="3")
        ids = [props.message_id for props, _ in f.drain(f.queues[1])]
        assert ids == ["1", "2", "3"]  # durable queue, persistent messages: all survived
    finally:
        f.delete()


def test_a_wrong_password_is_reported_plainly_and_never_shown(amqp_url: str, setenv) -> None:
    parts = pika.URLParameters(amqp_url)
    url = f"amqp://{parts.credentials.username}:wrong-pass-xyz@{parts.host}:{parts.port}/%2F"
    setenv({"PGQUEUE_AMQP_URL": url})
    with pytest.raises(DestinationRejected) as err:
        fan(1, {"n": 1})
    message = str(err.value)
    assert "rejected the credentials" in message and "check PGQUEUE_AMQP_URL" in message
    assert "wrong-pass-xyz" not in message
    assert f"amqp://{parts.credentials.username}@{parts.host}:{parts.port}/%2F" in message
    assert all(b.state == "closed" and b.failures == 0 for b in breakers().values())


def test_an_exchange_of_another_type_is_refused(fanout: Fanout, setenv) -> None:
    exchange = f"pgqueue.test.{uuid.uuid4().hex[:12]}"
    ch = pika.BlockingConnection(pika.URLParameters(fanout.url)).channel()
    ch.exchange_declare(exchange, exchange_type="direct", durable=True)
    setenv({"PGQUEUE_AMQP_URL": fanout.url, "PGQUEUE_AMQP_EXCHANGE": exchange})
    try:
        with pytest.raises(DestinationRejected, match="must be a durable fanout"):
            fan(1, {"n": 1})
    finally:
        ch.exchange_delete(exchange)
        ch.connection.close()


def test_mandatory_publish_with_no_queue_bound_fails(amqp_url: str, setenv) -> None:
    exchange = f"pgqueue.test.{uuid.uuid4().hex[:12]}"
    setenv({"PGQUEUE_AMQP_URL": amqp_url, "PGQUEUE_AMQP_MANDATORY": "1"})
    try:
        with pytest.raises(DestinationRejected, match="no queue is bound"):
            fan(1, {"exchange": exchange})
    finally:
        ch = pika.BlockingConnection(pika.URLParameters(amqp_url)).channel()
        ch.exchange_delete(exchange)
        ch.connection.close()


def test_an_unreachable_broker_opens_its_circuit(setenv) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    setenv(
        {
            "PGQUEUE_AMQP_URL": url,
            "PGQUEUE_BREAKER_THRESHOLD": "2",
            "PGQUEUE_BREAKER_COOLDOWN": "60",
        }
    )
    for _ in range(2):
        with pytest.raises(DestinationUnavailable, match="cannot publish to amqp://guest@127"):
            fan(1, {"n": 1})
    (breaker,) = breakers().values()
    assert breaker.state == "open"
    with pytest.raises(pgqueue.Snooze):
        fan(1, {"n": 1})


def test_a_nacked_publish_is_a_failed_attempt_then_retried(
    fanout: Fanout, setenv, client, db, schema
) -> None:
    # A full queue that rejects publishes makes the broker nack: the message was not
    # taken, so the attempt fails and is retried.
    full = f"{fanout.exchange}.full"
    ch = pika.BlockingConnection(pika.URLParameters(fanout.url)).channel()
    ch.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    ch.queue_bind(full, fanout.exchange)
    setenv({"PGQUEUE_AMQP_URL": fanout.url, "PGQUEUE_AMQP_EXCHANGE": fanout.exchange})
    try:
        job = AmqpFanout.enqueue({"n": 1}, client=client)
        assert drain_queue(client, "default") == {"retryable": 1}
        (error,) = job_row(db, schema, job.id)["errors"]
        assert error["error"] == "DestinationUnavailable" and "nack" in error["message"]
    finally:
        ch.queue_delete(full)
        ch.connection.close()
    assert drain_queue(client, "default", with_scheduled=True) == {"completed": 1}
    assert all(len(fanout.drain(q)) >= 1 for q in fanout.queues)
