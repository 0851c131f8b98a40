"""Storing one local file as an S3 object, streamed and verified (used by B2Upload).

boto3 is imported here, lazily, and nowhere in the core. The client is configured for
Backblaze B2, which rejects boto3's newer default integrity headers: checksums are sent
only when an operation requires them (``when_required``), so no request carries
``x-amz-checksum-*`` or ``x-amz-sdk-checksum-algorithm``. Integrity comes from the
classic ``Content-MD5`` header instead, which B2 and every S3 server check: each PUT
and each part is hashed just before it is sent, and the store rejects bytes that do not
match.

Below the multipart threshold one PUT; above it parts of ``part_size`` bytes, one after
the other, each read from the file by a bounded window (never a whole part in memory).
While the parts are hashed the whole file's SHA-256 is recomputed: if it differs from the
one ProcessFile found, the file changed and nothing is completed. After the upload
``head_object`` must show the size, the SHA-256 in the object's metadata and (unless
``PGQUEUE_B2_VERIFY_ETAG=0``) the expected ETag.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ._breaker import ANSWERED, TRANSPORT
from ._config import B2Settings, part_size_for
from ._errors import (
    DestinationRejected,
    DestinationUnavailable,
    Stopped,
    VerificationFailed,
    first_line,
    scrub,
)

META_SHA256 = "sha256"  # object metadata key (x-amz-meta-sha256)
HASH_CHUNK = 1024 * 1024
# botocore retries once at most: a dropped keep-alive connection is re-tried at once,
# anything longer is the job's business (backoff, breaker).
CLIENT_ATTEMPTS = 2

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "Unauthorized",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "401",
    }
)
DENIED_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
)
BUCKET_CODES = frozenset({"NoSuchBucket", "InvalidBucketName"})
BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"}
)
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-\d+$")

_clients: dict[B2Settings, Any] = {}
_clients_lock = threading.Lock()


def s3_client(settings: B2Settings) -> Any:
    """The process's boto3 S3 client for ``settings`` (clients are thread-safe)."""
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": CLIENT_ATTEMPTS, "mode": "standard"},
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                s3={"addressing_style": "path"},
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=settings.endpoint,
                region_name=settings.region,
                aws_access_key_id=settings.key_id,
                aws_secret_access_key=settings.application_key,
                config=config,
            )
            _clients[settings] = client
        return client


def classify(exc: BaseException) -> str:
    """What ``exc`` says about the store: ``transport``, ``answered`` or ``other``."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError):
        return TRANSPORT
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return TRANSPORT if status >= 500 or code in BUSY_CODES else ANSWERED
    if isinstance(exc, VerificationFailed):
        return ANSWERED
    return "other"


def translate(exc: Exception, settings: B2Settings, operation: str = "upload") -> Exception:
    """A library error as a one-line pgqueue error naming the store; others unchanged."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = settings.destination
    if isinstance(exc, NoCredentialsError):
        return DestinationRejected(
            f"no credentials for {where}: set PGQUEUE_B2_KEY_ID and PGQUEUE_B2_APPLICATION_KEY"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or "?"
        message = scrub(str(error.get("Message", "")), settings.application_key)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        said = f"{code}: {message}" if message else code
        if code in BUCKET_CODES:
            return DestinationRejected(
                f"bucket {settings.bucket!r} does not exist at {where} ({said}); "
                "check PGQUEUE_B2_BUCKET and PGQUEUE_B2_ENDPOINT"
            )
        if code in AUTH_CODES or status == 401:
            return DestinationRejected(
                f"{where} rejected the credentials ({said}); check PGQUEUE_B2_KEY_ID and "
                "PGQUEUE_B2_APPLICATION_KEY"
            )
        if code in DENIED_CODES or status == 403:
            return DestinationRejected(
                f"{where} denied the {operation} ({said}); the application key needs "
                "read and write access to the bucket"
            )
        if status >= 500 or code in BUSY_CODES:
            return DestinationUnavailable(f"{where} failed the {operation} with {status} ({said})")
        return DestinationRejected(f"{where} refused the {operation}: {status} ({said})")
    if isinstance(exc, BotoCoreError):
        text = scrub(first_line(exc), settings.application_key)
        if classify(exc) == TRANSPORT:
            return DestinationUnavailable(f"cannot reach {where}: {type(exc).__name__}: {text}")
        return DestinationRejected(f"{operation} to {where} failed: {type(exc).__name__}: {text}")
    return exc


class Window(io.RawIOBase):
    """Bytes ``[start, start + length)`` of an open file, read on demand: a request body
    that streams a part from disk instead of holding it in memory."""

    def __init__(self, f: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._f, self._start, self._length, self._pos = f, start, length, 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(base + offset, 0), self._length)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._pos
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size == 0:
            return b""
        self._f.seek(self._start + self._pos)
        data = self._f.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def hash_window(window: Window, whole: Any) -> bytes:
    """The MD5 of ``window`` (and feed its bytes to ``whole``), leaving it rewound."""
    md5 = hashlib.md5(usedforsecurity=False)
    window.seek(0)
    while chunk := window.read(HASH_CHUNK):
        md5.update(chunk)
        whole.update(chunk)
    if window.tell() != len(window):
        raise VerificationFailed(
            f"the file ended early: read {window.tell()} of {len(window)} bytes"
        )
    window.seek(0)
    return md5.digest()


@dataclass(frozen=True, slots=True)
class Stored:
    bucket: str
    key: str
    etag: str
    size: int
    uploaded: bool  # False: an identical object was already there

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "uploaded": self.uploaded,
        }


def head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's headers, or None if there is no such object or HEAD is forbidden.

    A HEAD answer has no body, so a 403 cannot tell bad credentials from a missing
    permission: the upload that follows gets the precise reason.
    """
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("404", "NoSuchKey", "NotFound", "403", "Forbidden"):
            return None
        raise


def already_stored(found: dict[str, Any] | None, size: int, sha256: str) -> bool:
    return (
        found is not None
        and found.get("ContentLength") == size
        and found.get("Metadata", {}).get(META_SHA256) == sha256
    )


def store_file(
    client: Any,
    settings: B2Settings,
    open_file: Callable[[], BinaryIO],
    *,
    key: str,
    size: int,
    sha256: str,
    content_type: str,
    cancelled: Callable[[], bool] = lambda: False,
) -> Stored:
    """Upload the file ``open_file()`` returns as ``key`` unless an identical object
    (same size and SHA-256) is there already; verify the result with ``head_object``."""
    bucket = settings.bucket
    found = head(client, bucket, key)
    if already_stored(found, size, sha256):
        assert found is not None
        return Stored(bucket, key, found.get("ETag", "").strip('"'), size, uploaded=False)
    whole = hashlib.sha256()
    extra = {"ContentType": content_type, "Metadata": {META_SHA256: sha256}}
    with open_file() as f:
        if size < settings.multipart_threshold:
            body = Window(f, 0, size)
            digest = hash_window(body, whole)
            _check_whole(whole, sha256)
            reply = client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentLength=size,
                ContentMD5=base64.b64encode(digest).decode(),
                **extra,
            )
            _check_etag(settings, reply.get("ETag", ""), digest.hex(), "the PUT")
            expected = digest.hex()
        else:
            expected = _multipart(client, settings, f, key, size, sha256, whole, extra, cancelled)
    after = client.head_object(Bucket=bucket, Key=key)
    verify(after, size=size, sha256=sha256, etag=expected if settings.verify_etag else None)
    return Stored(bucket, key, after.get("ETag", "").strip('"'), size, uploaded=True)


def _multipart(
    client: Any,
    settings: B2Settings,
    f: BinaryIO,
    key: str,
    size: int,
    sha256: str,
    whole: Any,
    extra: dict[str, Any],
    cancelled: Callable[[], bool],
) -> str:
    bucket = settings.bucket
    part_size = part_size_for(size, settings.part_size)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts: list[dict[str, Any]] = []
        digests: list[bytes] = []
        for number, start in enumerate(range(0, size, part_size), start=1):
            if cancelled():
                raise Stopped(f"stopped uploading {key} before part {number}")
            body = Window(f, start, min(part_size, size - start))
            digest = hash_window(body, whole)
            if start + len(body) == size:
                _check_whole(whole, sha256)  # before the last part: nothing gets completed
            reply = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=len(body),
                ContentMD5=base64.b64encode(digest).decode(),
            )
            _check_etag(settings, reply.get("ETag", ""), digest.hex(), f"part {number}")
            parts.append({"PartNumber": number, "ETag": reply["ETag"]})
            digests.append(digest)
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        # Best effort: an unfinished upload costs storage until it is aborted.
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f"-{len(parts)}"


class FileContentChanged(Exception):
    """The file's SHA-256 is not the one the job was given."""


def _check_whole(whole: Any, sha256: str) -> None:
    if whole.hexdigest() != sha256:
        raise FileContentChanged(
            f"the file's SHA-256 is now {whole.hexdigest()}, not {sha256}: it changed after "
            "it was processed"
        )


def _check_etag(settings: B2Settings, etag: str, md5_hex: str, what: str) -> None:
    etag = etag.strip('"')
    if settings.verify_etag and etag and etag != md5_hex:
        raise VerificationFailed(
            f"{settings.destination} stored {what} with ETag {etag}, expected the MD5 {md5_hex} "
            "(PGQUEUE_B2_VERIFY_ETAG=0 skips ETag checks for stores whose ETags are not MD5s)"
        )


def verify(found: dict[str, Any], *, size: int, sha256: str, etag: str | None) -> None:
    """Check ``head_object``'s answer against what was uploaded."""
    got_size = found.get("ContentLength")
    if got_size != size:
        raise VerificationFailed(f"the stored object has {got_size} bytes, expected {size}")
    got_sha = found.get("Metadata", {}).get(META_SHA256)
    if got_sha != sha256:
        raise VerificationFailed(
            f"the stored object's sha256 metadata is {got_sha}, expected {sha256}"
        )
    got_etag = found.get("ETag", "").strip('"')
    if etag is None or not got_etag:
        return
    # A multipart ETag in the usual form (MD5 of the parts' MD5s, "-N") must match; a
    # store that names big objects differently is trusted on the parts' ETags.
    comparable = "-" not in etag or _MULTIPART_ETAG.match(got_etag) is not None
    if comparable and got_etag != etag:
        raise VerificationFailed(f"the stored object's ETag is {got_etag}, expected {etag}")
