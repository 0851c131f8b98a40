"""Print the pipeline's events: ``python -m examples.upload.consumer [--queue NAME] [--count N]``.

Declares a durable queue bound to the fanout exchange (``PGQUEUE_AMQP_EXCHANGE``, default
``pgqueue.events``) on the broker at ``PGQUEUE_AMQP_URL`` (or ``AMQP_URL``), and prints
one JSON line per event. Every consumer with its own queue gets every event. Delivery is
at least once: a message id already seen (the id of the job that published it) is a
redelivery and is skipped. A lost connection (a broker restart) is retried with backoff.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import OrderedDict

import pika

SEEN_MAX = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", default="upload-events", help="this consumer's queue")
    parser.add_argument("--count", type=int, default=0, help="exit after N events (0: never)")
    args = parser.parse_args(argv)
    url = os.environ.get("PGQUEUE_AMQP_URL") or os.environ.get("AMQP_URL")
    if not url:
        sys.exit("set PGQUEUE_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2F)")
    exchange = os.environ.get("PGQUEUE_AMQP_EXCHANGE") or "pgqueue.events"
    seen: OrderedDict[str, None] = OrderedDict()
    delay = 0.5
    while True:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
        except pika.exceptions.AMQPConnectionError as exc:
            print(
                f"broker unavailable ({type(exc).__name__}); retrying in {delay:g} s",
                file=sys.stderr,
            )
            time.sleep(delay)
            delay = min(delay * 2, 30)
            continue
        delay = 0.5
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
        channel.queue_declare(args.queue, durable=True)
        channel.queue_bind(args.queue, exchange)
        channel.basic_qos(prefetch_count=50)
        print(f"consuming {exchange} through queue {args.queue}", file=sys.stderr, flush=True)
        try:
            for method, props, body in channel.consume(args.queue, inactivity_timeout=None):
                message_id = props.message_id or ""
                if message_id and message_id in seen:
                    channel.basic_ack(method.delivery_tag)  # a redelivery: printed before
                    continue
                seen[message_id] = None
                if len(seen) > SEEN_MAX:
                    seen.popitem(last=False)
                line = {"message_id": message_id, "event": json.loads(body)}
                print(json.dumps(line, sort_keys=True), flush=True)
                channel.basic_ack(method.delivery_tag)
                if args.count and len(seen) >= args.count:
                    connection.close()
                    return 0
        except pika.exceptions.AMQPConnectionError as exc:
            print(f"connection lost ({type(exc).__name__}); reconnecting", file=sys.stderr)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
