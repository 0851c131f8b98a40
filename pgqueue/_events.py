"""Job lifecycle events: the core emits them, integrations subscribe.

Logging, Prometheus and Sentry all listen here, so the core never imports them. A
handler that raises is logged and skipped: observing a job must never fail it.

Events and their payload (keyword arguments):
  job_start      job, node
  job_stop       job, node, transition, duration (seconds), outcome (the state name)
  job_exception  job, node, transition, duration, error (the exception), traceback (str)
  node_start / node_stop   node
  breaker_change  name (the destination), state ("closed" | "open" | "half_open"), failures
                  (on every change of the state or of the count of failures in a row)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pgqueue.events")

Handler = Callable[..., None]
_handlers: dict[str, list[Handler]] = {}

EVENTS = ("job_start", "job_stop", "job_exception", "node_start", "node_stop", "breaker_change")


def subscribe(event: str, handler: Handler) -> Callable[[], None]:
    """Call ``handler(**payload)`` on ``event``; returns a function that unsubscribes."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
    _handlers.setdefault(event, []).append(handler)

    def unsubscribe() -> None:
        handlers = _handlers.get(event, [])
        if handler in handlers:
            handlers.remove(handler)

    return unsubscribe


def emit(event: str, **payload: Any) -> None:
    handlers = _handlers.get(event)
    if not handlers:
        return
    for handler in tuple(handlers):
        try:
            handler(**payload)
        except Exception:
            log.exception("pgqueue event handler %r for %s failed", handler, event)
