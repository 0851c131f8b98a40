"""ProcessFile against a real database and real files: facts, outcomes, next steps, memory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pgqueue
from pgqueue.builtins import ProcessFile, pipeline_spec, scan_file
from pgqueue.testing import drain_queue, list_jobs, perform_job
from tests.helpers import job_row


class Collect(pgqueue.Worker):
    """A final pipeline step of the test's own, on a queue nobody drains."""

    queue = "collect"

    def perform(self, job: pgqueue.Job) -> None:
        pass


def test_scan_file_reports_size_sha256_and_type(tmp_path: Path) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "upload").write_bytes(data)
    facts = scan_file(str(tmp_path / "upload"), "cat.jpg")
    assert facts.size == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    assert facts.content_type == "image/png"
    (tmp_path / "empty.txt").write_bytes(b"")
    empty = scan_file(str(tmp_path / "empty.txt"))
    assert (empty.size, empty.sha256) == (0, hashlib.sha256(b"").hexdigest())


def test_records_facts_and_enqueues_the_next_step_once(
    tmp_path: Path, client, configured, db, schema
) -> None:
    data = b"name,qty\napples,3\n"
    path = tmp_path / "stock.csv"
    path.write_bytes(data)
    spec = pipeline_spec(
        str(path), [Collect], name="stock.csv", key="uploads/7/stock.csv", context={"upload_id": 7}
    )
    (job,) = client.enqueue_many([spec])
    assert drain_queue(client, "default") == {"completed": 1}

    row = job_row(db, schema, job.id)
    facts = {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "text/csv",
    }
    (following,) = list_jobs(client, worker=Collect)
    assert row["meta"] == {**facts, "next_job_id": following.id}
    assert following.queue == "collect"
    assert following.args == {
        "file": {"path": str(path), "name": "stock.csv", **facts},
        "key": "uploads/7/stock.csv",
        "context": {"upload_id": 7},
        "pipeline": {"id": job.id, "step": 1, "then": []},
    }
    # The same job running again (its ack was lost, its node died) finds the step it
    # enqueued before instead of adding another.
    perform_job(ProcessFile, job.args, id=job.id)
    assert [j.id for j in list_jobs(client, worker=Collect)] == [following.id]


def test_a_missing_file_is_discarded_at_once(tmp_path: Path, client, db, schema) -> None:
    gone = str(tmp_path / "never-written")
    job = ProcessFile.enqueue({"path": gone}, client=client)
    assert drain_queue(client, "default") == {"discarded": 1}
    row = job_row(db, schema, job.id)
    assert row["attempt"] == 1
    (error,) = row["errors"]
    assert error["error"] == "Discard" and error["message"] == f"file not found: {gone}"


def test_a_read_error_is_retried_and_then_succeeds(tmp_path: Path, client, db, schema) -> None:
    # Reading /proc/self/mem at offset 0 fails with a real EIO: an I/O error that is no
    # reason to give up on the file.
    path = tmp_path / "flaky"
    path.symlink_to("/proc/self/mem")
    job = ProcessFile.enqueue({"path": str(path)}, client=client)
    assert drain_queue(client, "default") == {"retryable": 1}
    row = job_row(db, schema, job.id)
    (error,) = row["errors"]
    assert error["error"] == "OSError" and "Input/output error" in error["message"]

    path.unlink()
    path.write_bytes(b"fine now")
    assert drain_queue(client, "default", with_scheduled=True) == {"completed": 1}
    row = job_row(db, schema, job.id)
    assert row["attempt"] == 2 and row["meta"]["size"] == 8


PEAK_RSS_SCRIPT = """
import json, sys
import pgqueue
from pgqueue.builtins import ProcessFile

def hwm_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))

before = hwm_kib()
job = pgqueue.Job(id=1, worker=ProcessFile.name, args={"path": sys.argv[1]})
ProcessFile().perform(job)
print(json.dumps({"before_kib": before, "after_kib": hwm_kib(), "meta": job.meta}))
"""


def test_a_file_over_200_mb_is_streamed_in_flat_memory(tmp_path: Path) -> None:
    block = os.urandom(1024 * 1024)
    blocks = 210
    path = tmp_path / "big.bin"
    expected = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(blocks):
            chunk = block[i:] + block[:i]  # every MiB different
            f.write(chunk)
            expected.update(chunk)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        path.unlink()  # pytest keeps the last sessions' temporary directories
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["meta"]["size"] == blocks * 1024 * 1024
    assert result["meta"]["sha256"] == expected.hexdigest()
    grown_mib = (result["after_kib"] - result["before_kib"]) / 1024
    print(
        f"ProcessFile of 210 MiB: peak RSS {result['after_kib'] / 1024:.1f} MiB "
        f"(+{grown_mib:.1f} MiB over the interpreter with pgqueue imported)"
    )
    assert grown_mib < 16, result
