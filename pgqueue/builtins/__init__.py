"""Built-in workers: file processing, B2 upload (S3 API), AMQP fan-out.

Imported only by apps that use them; the core never imports this package, and this
package imports boto3 and pika only when a job needs them. Importing it registers the
three workers, so ``pgqueue worker --app pgqueue.builtins`` runs them as they are.

    ProcessFile → B2Upload → AmqpFanout

``pipeline_spec(path, [B2Upload, AmqpFanout], ...)`` builds the first job; each step
enqueues the next one once (see ``_pipeline``). docs/builtins.md describes the
arguments, the events and every environment variable.
"""

from ._amqp import AmqpFanout
from ._b2 import B2Upload
from ._breaker import CircuitBreaker, breaker_for, breakers
from ._config import AmqpSettings, B2Settings, BreakerSettings, RetrySettings
from ._errors import (
    BuiltinError,
    DestinationRejected,
    DestinationUnavailable,
    FileChanged,
    VerificationFailed,
)
from ._pipeline import enqueue_next, pipeline_spec
from ._process import FileFacts, ProcessFile, scan_file
from ._sniff import sniff

__all__ = [
    "AmqpFanout",
    "AmqpSettings",
    "B2Settings",
    "B2Upload",
    "BreakerSettings",
    "BuiltinError",
    "CircuitBreaker",
    "DestinationRejected",
    "DestinationUnavailable",
    "FileChanged",
    "FileFacts",
    "ProcessFile",
    "RetrySettings",
    "VerificationFailed",
    "breaker_for",
    "breakers",
    "enqueue_next",
    "pipeline_spec",
    "scan_file",
    "sniff",
]
