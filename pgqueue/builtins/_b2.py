"""B2Upload: put a local file into a Backblaze B2 bucket through the S3 API.

Settings come from ``PGQUEUE_B2_*`` (see docs/builtins.md), read at each attempt. The
upload itself (streamed parts, Content-MD5, verification) is in ``_s3``; this module
turns its outcomes into job outcomes:

- an identical object already there (same size and SHA-256): completed, not uploaded;
- store unreachable, 5xx, timeouts: a failed attempt, retried with backoff, and counted
  by the store's circuit breaker, which once open snoozes the jobs instead;
- bad credentials, no permission, no such bucket: a failed attempt with a plain message
  naming the variable to fix. Retried with backoff rather than discarded at once,
  because the operator fixing the settings is the usual end of it; the attempt budget
  bounds it and the dead letter keeps the message;
- the local file gone or changed since ProcessFile read it: discarded (the job's
  arguments can never succeed).
"""

from __future__ import annotations

import os
from typing import Any

from .._job import Job
from .._outcomes import Discard
from ._config import B2Settings
from ._pipeline import BuiltinWorker, enqueue_next, guarded
from ._process import read_facts
from ._s3 import FileContentChanged, classify, s3_client, store_file, translate


class B2Upload(BuiltinWorker):
    """Args: ``file`` (``path``, and ``size``/``sha256``/``content_type`` as ProcessFile
    found them; computed when missing), ``key`` (default: the SHA-256). Meta after it
    ran: bucket, key, etag, size, uploaded (False when the object was already there)."""

    name = "pgqueue.builtins.B2Upload"
    timeout = 6 * 3600.0  # a 5 GB file on a slow link; botocore's timeouts catch a hang

    def perform(self, job: Job) -> None:
        settings = B2Settings.from_env(os.environ)
        file = _file_args(job)
        path = file["path"]
        if not all(isinstance(file.get(k), t) for k, t in _FACTS.items()):
            file.update(read_facts(path, file.get("name"), job).as_dict())
        key = job.args.get("key") or file["sha256"]
        if not isinstance(key, str) or len(key.encode()) > 1024:
            raise Discard(f"B2Upload needs args.key as a string of at most 1024 bytes, got {key!r}")

        def open_file() -> Any:
            try:
                return open(path, "rb")  # closed by store_file
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise Discard(f"file not found: {path}") from None

        try:
            with guarded(job, settings.destination, classify, lambda e: translate(e, settings)):
                stored = store_file(
                    s3_client(settings),
                    settings,
                    open_file,
                    key=key,
                    size=file["size"],
                    sha256=file["sha256"],
                    content_type=file["content_type"],
                    cancelled=lambda: job.cancel_requested,
                )
        except FileContentChanged as exc:
            raise Discard(f"{path}: {exc}") from None
        except Exception as exc:
            translated = translate(exc, settings)
            if translated is exc:
                raise
            raise translated from None
        job.update_meta(stored.as_dict())
        state = {**job.args, "file": file, "key": key, "object": stored.as_dict()}
        following = enqueue_next(job, state)
        if following is not None:
            job.update_meta({"next_job_id": following.id})


_FACTS = {"size": int, "sha256": str, "content_type": str}


def _file_args(job: Job) -> dict[str, Any]:
    file = job.args.get("file")
    if isinstance(file, str):
        file = {"path": file}
    if not isinstance(file, dict) or not isinstance(file.get("path"), str) or not file["path"]:
        raise Discard(f"B2Upload needs args.file.path, a file path; got {file!r}")
    return dict(file)
