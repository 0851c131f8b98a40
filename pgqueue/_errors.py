"""Exceptions pgqueue raises to its callers.

Every message is written for a person at a terminal: what was expected, what was given,
and never a password. Internal failures carry the job id, queue and worker they concern.
"""

from __future__ import annotations


class PgQueueError(Exception):
    """Base class of every error pgqueue raises on purpose."""


class ConfigError(PgQueueError, ValueError):
    """A setting, argument or option has a value pgqueue cannot use."""


class DatabaseUnavailable(PgQueueError):
    """The database could not be reached or refused the connection."""


class NotMigrated(PgQueueError):
    """The schema has no pgqueue tables (or an older version of them)."""


class UnknownWorker(PgQueueError):
    """A job names a worker that no imported module registered.

    pgqueue never imports a path read from a row: the worker process runs only what
    ``--app`` registered, so this is a job failure, retried and finally discarded.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no worker named {name!r} is registered in this process; "
            "import the module that defines it from --app"
        )
        self.name = name


class JobTimeout(PgQueueError, TimeoutError):
    """A job ran longer than its worker's ``timeout``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"job exceeded its {seconds:g} s timeout")
        self.seconds = seconds
