"""The pipeline's worker module: ``pgqueue worker --app examples.upload.worker``.

Importing ``pgqueue.builtins`` registers ProcessFile, B2Upload and AmqpFanout; this
module says how they are chained for an upload, and the HTTP server uses ``upload_job``
to start the chain. The workers read their settings (bucket, broker...) from the
environment at each attempt, so nothing else is needed here.
"""

from __future__ import annotations

import re

import pgqueue
from pgqueue.builtins import AmqpFanout, B2Upload, pipeline_spec

# ProcessFile (size, SHA-256, content type) → B2Upload → AmqpFanout.
STEPS = (B2Upload, AmqpFanout)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def object_key(upload_id: int, name: str) -> str:
    """``uploads/<id>/<name>`` with the name reduced to safe characters."""
    safe = _UNSAFE.sub("_", name).strip("._") or "file"
    return f"uploads/{upload_id}/{safe[:200]}"


def upload_job(path: str, *, name: str, upload_id: int) -> pgqueue.JobSpec:
    """The first job of an upload's pipeline; its ``context`` reaches the event."""
    return pipeline_spec(
        path,
        STEPS,
        name=name,
        key=object_key(upload_id, name),
        context={"upload_id": upload_id, "name": name},
        tags=["upload"],
    )
