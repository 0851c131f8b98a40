"""pgqueue: a durable job queue for Python whose only required infrastructure is PostgreSQL."""

from ._client import Client, configure, default_client
from ._cron import Cron, cron
from ._errors import (
    ConfigError,
    DatabaseUnavailable,
    JobTimeout,
    NotMigrated,
    PgQueueError,
    UnknownWorker,
)
from ._events import subscribe
from ._job import Job, JobSpec
from ._node import Node
from ._outcomes import Cancel, Discard, Snooze
from ._registry import registered
from ._unique import Unique
from ._worker import Worker, worker

__version__ = "0.1.0"

__all__ = [
    "Cancel",
    "Client",
    "ConfigError",
    "Cron",
    "DatabaseUnavailable",
    "Discard",
    "Job",
    "JobSpec",
    "JobTimeout",
    "Node",
    "NotMigrated",
    "PgQueueError",
    "Snooze",
    "Unique",
    "UnknownWorker",
    "Worker",
    "__version__",
    "configure",
    "cron",
    "default_client",
    "registered",
    "subscribe",
    "worker",
]
