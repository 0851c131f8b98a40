"""ProcessFile: read a file once, in chunks, for its size, SHA-256 and content type.

Memory stays flat whatever the file's size: one reused 1 MiB buffer and the first 4 KiB
for the content type. The facts go into the job's meta and to the next pipeline step.

Errors: a path that does not exist, or is a directory, will not get better, so the job
is discarded at once with the reason. Any other read error (EIO, a stale network mount,
permissions being fixed) is a failed attempt and retried with backoff; so is a file
that changes size while it is read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._job import Job
from .._outcomes import Discard
from ._errors import FileChanged, Stopped
from ._pipeline import BuiltinWorker, enqueue_next
from ._sniff import HEAD_BYTES, sniff

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileFacts:
    size: int
    sha256: str
    content_type: str

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "content_type": self.content_type}


def scan_file(
    path: str, name: str | None = None, *, cancelled: Callable[[], bool] = lambda: False
) -> FileFacts:
    """Stream ``path`` once: its size, SHA-256 and sniffed content type.

    Raises FileNotFoundError / IsADirectoryError / other OSError as they come.
    """
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    head = b""
    size = 0
    with open(path, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            if len(head) < HEAD_BYTES:
                head += bytes(view[: min(n, HEAD_BYTES - len(head))])
            size += n
            if cancelled():
                raise Stopped(f"stopped reading {path} after {size} bytes")
        if stat.S_ISREG(st.st_mode) and os.fstat(f.fileno()).st_size != size:
            raise FileChanged(
                f"{path} changed while it was read: {size} bytes read, now "
                f"{os.fstat(f.fileno()).st_size}"
            )
    return FileFacts(size, digest.hexdigest(), sniff(head, name or path))


def read_facts(path: str, name: str | None, job: Job) -> FileFacts:
    """``scan_file`` with the errors turned into outcomes: gone for good → Discard."""
    try:
        return scan_file(path, name, cancelled=lambda: job.cancel_requested)
    except (FileNotFoundError, NotADirectoryError):
        raise Discard(f"file not found: {path}") from None
    except IsADirectoryError:
        raise Discard(f"not a file but a directory: {path}") from None


class ProcessFile(BuiltinWorker):
    """Args: ``path`` (required), ``name`` (the original file name), ``key`` (the object
    key for B2Upload), ``context`` (passed to every step and the event), ``then``
    (worker names of the next steps). Meta after it ran: size, sha256, content_type."""

    name = "pgqueue.builtins.ProcessFile"
    timeout = 3600.0

    def perform(self, job: Job) -> None:
        path = job.args.get("path")
        if not isinstance(path, str) or not path:
            raise Discard(f"ProcessFile needs args.path, a file path; got {path!r}")
        name = job.args.get("name") or os.path.basename(path)
        facts = read_facts(path, name, job)
        job.update_meta(facts.as_dict())
        state: dict[str, Any] = {"file": {"path": path, "name": name, **facts.as_dict()}}
        for key in ("key", "context"):
            if key in job.args:
                state[key] = job.args[key]
        following = enqueue_next(job, state)
        if following is not None:
            job.update_meta({"next_job_id": following.id})
