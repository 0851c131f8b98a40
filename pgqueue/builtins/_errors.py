"""What the built-in workers raise when a step fails, and how secrets stay out of it.

A failed attempt's message is stored in the job row and shown by ``pgqueue inspect``,
so each one names the destination (without its password) and the cause in one line.
Library exceptions are re-raised as these, ``from None``: the original might carry a
URL with a password in its text or in a chained traceback.
"""

from __future__ import annotations

from .._errors import PgQueueError


class BuiltinError(PgQueueError):
    """Base of the errors of ``pgqueue.builtins``."""


class DestinationUnavailable(BuiltinError):
    """The broker or the object store could not be reached (a transport failure).

    Retried with the job's backoff; repeated ones open the destination's circuit.
    """


class DestinationRejected(BuiltinError):
    """The destination answered with a refusal that retrying will not fix by itself:
    bad credentials, a missing bucket or exchange, no permission. Retried with backoff
    (the operator may fix the settings meanwhile), then discarded."""


class VerificationFailed(BuiltinError):
    """What was stored is not what was sent (size, checksum or ETag differ)."""


class FileChanged(BuiltinError):
    """The file changed while it was read; the next attempt reads it again."""


class Stopped(BuiltinError):
    """The job was asked to stop (timeout, cancel, shutdown) and did, between chunks."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every secret in ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
