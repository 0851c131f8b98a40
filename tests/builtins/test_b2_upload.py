"""B2Upload against a real S3 server (SeaweedFS), every request captured as sent."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pgqueue
from pgqueue.builtins import B2Upload, DestinationRejected, DestinationUnavailable, _s3, breakers
from pgqueue.builtins._config import B2Settings
from pgqueue.testing import drain_queue
from tests.builtins.servers import free_port
from tests.helpers import job_row

MiB = 1024 * 1024
CHECKSUM_HEADERS = ("x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "x-amz-trailer")


@pytest.fixture
def sent(b2_env: dict[str, str], setenv) -> Iterator[list[tuple[str, str, dict[str, str]]]]:
    """Every request B2Upload's client sends: (method, url, headers)."""
    setenv(b2_env)
    client = _s3.s3_client(B2Settings.from_env(os.environ))
    requests: list[tuple[str, str, dict[str, str]]] = []

    def capture(request: Any, **_: Any) -> None:
        requests.append(
            (request.method, request.url, {k.lower(): v for k, v in request.headers.items()})
        )

    client.meta.events.register("before-send.s3", capture)
    yield requests
    client.meta.events.unregister("before-send.s3", capture)


def upload(path: Path, key: str | None = None, **file: Any) -> pgqueue.Job:
    args: dict[str, Any] = {"file": {"path": str(path), **file}}
    if key is not None:
        args["key"] = key
    job = pgqueue.Job(id=1, worker=B2Upload.name, args=args, attempt=1)
    B2Upload().perform(job)
    return job


def stored_sha256(seaweed, bucket: str, key: str) -> str:
    body = seaweed.client().get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


def assert_no_checksum_headers(requests) -> None:
    for method, url, headers in requests:
        bad = [h for h in headers if h.startswith(CHECKSUM_HEADERS)]
        assert not bad, f"{method} {url} carried {bad}"


def test_small_file_one_put_verified_without_checksum_headers(
    tmp_path: Path, seaweed, bucket: str, sent
) -> None:
    data = b"%PDF-1.4\n" + os.urandom(100_000)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    job = upload(path, "docs/report.pdf")

    sha = hashlib.sha256(data).hexdigest()
    assert job.meta == {
        "bucket": bucket,
        "key": "docs/report.pdf",
        "etag": hashlib.md5(data).hexdigest(),
        "size": len(data),
        "uploaded": True,
    }
    head = seaweed.client().head_object(Bucket=bucket, Key="docs/report.pdf")
    assert head["ContentLength"] == len(data) and head["Metadata"] == {"sha256": sha}
    assert head["ContentType"] == "application/pdf"
    assert stored_sha256(seaweed, bucket, "docs/report.pdf") == sha
    assert [m for m, _, _ in sent] == ["HEAD", "PUT", "HEAD"]
    assert_no_checksum_headers(sent)
    put = sent[1][2]
    assert "content-md5" in put  # integrity the classic way, which B2 accepts


@pytest.fixture
def small_parts(setenv) -> None:
    setenv({"PGQUEUE_B2_MULTIPART_THRESHOLD": "8MiB", "PGQUEUE_B2_PART_SIZE": "5MiB"})


def test_large_file_goes_in_streamed_parts(
    tmp_path: Path, seaweed, bucket: str, small_parts, sent
) -> None:
    data = os.urandom(13 * MiB + 123)
    path = tmp_path / "video.bin"
    path.write_bytes(data)
    job = upload(path)  # no key: the SHA-256 names the object

    sha = hashlib.sha256(data).hexdigest()
    parts = [data[i : i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    composite = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert job.meta["key"] == sha and job.meta["etag"] == f"{composite}-3"
    head = seaweed.client().head_object(Bucket=bucket, Key=sha)
    assert head["ContentLength"] == len(data) and head["Metadata"] == {"sha256": sha}
    assert stored_sha256(seaweed, bucket, sha) == sha
    kinds = [
        "part" if "partNumber=" in u else "complete" if "uploadId=" in u else m for m, u, _ in sent
    ]
    assert kinds == ["HEAD", "POST", "part", "part", "part", "complete", "HEAD"]
    lengths = [int(h["content-length"]) for m, u, h in sent if "partNumber" in u]
    assert lengths == [5 * MiB, 5 * MiB, 3 * MiB + 123]
    assert all("content-md5" in h for m, u, h in sent if "partNumber" in u)
    assert_no_checksum_headers(sent)


def test_an_identical_object_is_not_uploaded_again(tmp_path: Path, seaweed, bucket, sent) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"same bytes")
    assert upload(path, "k").meta["uploaded"] is True
    sent.clear()
    again = upload(path, "k")
    assert again.meta["uploaded"] is False and [m for m, _, _ in sent] == ["HEAD"]
    # Other bytes under the same key are uploaded over it.
    path.write_bytes(b"new bytes!")
    assert upload(path, "k").meta["uploaded"] is True
    assert stored_sha256(seaweed, bucket, "k") == hashlib.sha256(b"new bytes!").hexdigest()


def test_a_file_changed_since_processing_is_discarded(
    tmp_path: Path, seaweed, bucket, sent
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"edited after ProcessFile read it")
    old = hashlib.sha256(b"what ProcessFile read").hexdigest()
    with pytest.raises(pgqueue.Discard, match="changed after it was processed"):
        upload(path, "k", size=path.stat().st_size, sha256=old, content_type="text/plain")
    assert [m for m, _, _ in sent] == ["HEAD"]  # nothing was stored


def test_a_missing_local_file_is_discarded(tmp_path: Path, sent) -> None:
    with pytest.raises(pgqueue.Discard, match="file not found"):
        upload(tmp_path / "gone", "k", size=1, sha256="0" * 64, content_type="text/plain")


def test_bad_credentials_fail_plainly_and_never_show_the_key(
    tmp_path: Path, b2_env, setenv, client, db, schema
) -> None:
    setenv({**b2_env, "PGQUEUE_B2_APPLICATION_KEY": "wrong-secret-0123456789"})
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    job = B2Upload.enqueue({"file": {"path": str(path)}, "key": "k"}, client=client)
    assert drain_queue(client, "default") == {"retryable": 1}
    (error,) = job_row(db, schema, job.id)["errors"]
    assert error["error"] == "DestinationRejected"
    assert "rejected the credentials (SignatureDoesNotMatch" in error["message"]
    assert "PGQUEUE_B2_APPLICATION_KEY" in error["message"]
    assert "wrong-secret" not in json.dumps(error)
    # A refusal proves the store is up: the circuit stays closed.
    assert all(b.state == "closed" and b.failures == 0 for b in breakers().values())


def test_a_missing_bucket_fails_plainly(tmp_path: Path, b2_env, setenv) -> None:
    setenv({**b2_env, "PGQUEUE_B2_BUCKET": "no-such-bucket-here"})
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    with pytest.raises(DestinationRejected) as err:
        upload(path, "k")
    assert "bucket 'no-such-bucket-here' does not exist" in str(err.value)
    assert "check PGQUEUE_B2_BUCKET" in str(err.value)


def test_an_unreachable_store_opens_its_circuit(tmp_path: Path, b2_env, setenv) -> None:
    port = free_port()  # nothing listens there
    setenv(
        {
            **b2_env,
            "PGQUEUE_B2_ENDPOINT": f"http://127.0.0.1:{port}",
            "PGQUEUE_BREAKER_THRESHOLD": "2",
            "PGQUEUE_BREAKER_COOLDOWN": "60",
        }
    )
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    for _ in range(2):
        with pytest.raises(
            DestinationUnavailable, match=f"cannot reach s3:http://127.0.0.1:{port}/"
        ):
            upload(path, "k")
    (breaker,) = breakers().values()
    assert breaker.state == "open"
    job = pgqueue.Job(id=1, worker=B2Upload.name, args={"file": {"path": str(path)}, "key": "k"})
    with pytest.raises(pgqueue.Snooze) as snoozed:
        B2Upload().perform(job)
    assert snoozed.value.seconds >= 59
    held = job.meta.pop("breaker_since")  # when the breaker first held it back: now
    assert abs((datetime.now(UTC) - datetime.fromisoformat(held)).total_seconds()) < 60
    assert job.meta == {
        "breaker_snoozes": 1,
        "breaker": f"s3:http://127.0.0.1:{port}/{b2_env['PGQUEUE_B2_BUCKET']}",
    }


BIG_UPLOAD_SCRIPT = """
import json, sys
import pgqueue
from pgqueue.builtins import B2Upload

def hwm_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))

# The client and its service model are loaded once per process, before the baseline.
import os
from pgqueue.builtins import _s3
from pgqueue.builtins._config import B2Settings
_s3.s3_client(B2Settings.from_env(os.environ)).list_buckets()
before = hwm_kib()
job = pgqueue.Job(id=1, worker=B2Upload.name, args={"file": {"path": sys.argv[1]}, "key": "big"})
B2Upload().perform(job)
print(json.dumps({"before_kib": before, "after_kib": hwm_kib(), "meta": job.meta}))
"""


@pytest.mark.slow
def test_a_210_mb_upload_streams_in_bounded_memory(tmp_path: Path, seaweed, bucket, b2_env) -> None:
    block = os.urandom(MiB)
    path = tmp_path / "big.bin"
    expected = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(210):
            chunk = block[i:] + block[:i]
            f.write(chunk)
            expected.update(chunk)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", BIG_UPLOAD_SCRIPT, str(path)],
            env={**os.environ, **b2_env, "PGQUEUE_B2_PART_SIZE": "16MiB"},
            capture_output=True,
            text=True,
            timeout=600,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        path.unlink()  # pytest keeps the last sessions' temporary directories
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["meta"]["size"] == 210 * MiB and result["meta"]["etag"].endswith("-14")
    s3 = seaweed.client()
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["Metadata"]["sha256"] == expected.hexdigest()
    s3.delete_object(Bucket=bucket, Key="big")
    grown_mib = (result["after_kib"] - result["before_kib"]) / 1024
    print(
        f"B2Upload of 210 MiB in 16 MiB parts: peak RSS {result['after_kib'] / 1024:.1f} MiB "
        f"(+{grown_mib:.1f} MiB)"
    )
    # Parts stream from disk: less than one part's 16 MiB, nowhere near 210.
    assert grown_mib < 12, result
