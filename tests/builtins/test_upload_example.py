"""The upload pipeline example end to end: HTTP upload → ProcessFile → B2Upload → AmqpFanout
→ two consumers, with every piece a real process and every server real."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from examples.upload import server
from tests.builtins.conftest import PGQUEUE, Fanout
from tests.builtins.servers import free_port
from tests.helpers import states, wait_for


def post(port: int, name: str, data: bytes) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/uploads?name={urllib.request.quote(name)}",
        data=data,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status, dict(reply.headers), json.loads(reply.read())


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return json.loads(reply.read())


def spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT)


def test_upload_to_event(
    seaweed, bucket, b2_env, amqp_url, client, db, schema, env, tmp_path: Path
) -> None:
    f = Fanout(amqp_url)  # names only: the consumers declare their queues themselves
    app_env = {
        **env,
        **b2_env,
        "PGQUEUE_AMQP_URL": amqp_url,
        "PGQUEUE_AMQP_EXCHANGE": f.exchange,
        "PGQUEUE_B2_MULTIPART_THRESHOLD": "6MiB",
        "PGQUEUE_B2_PART_SIZE": "5MiB",
    }
    files = {
        "cat photo.png": b"\x89PNG\r\n\x1a\n" + os.urandom(40_000),
        "notes.txt": b"remember the milk\n",
        "video.mp4": b"\x00\x00\x00\x18ftypmp42" + os.urandom(7 * 1024 * 1024),
    }
    procs: list[subprocess.Popen] = []
    port = free_port()
    try:
        consumers = []
        for q in f.queues:
            out = tmp_path / f"{q}.out"
            consumers.append((out, tmp_path / f"{q}.err"))
            with open(out, "wb") as o, open(tmp_path / f"{q}.err", "wb") as e:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "examples.upload.consumer",
                            "--queue",
                            q,
                            "--count",
                            "3",
                        ],
                        env=app_env,
                        stdout=o,
                        stderr=e,
                    )
                )
        for _, err in consumers:
            wait_for(lambda err=err: b"consuming" in err.read_bytes(), timeout=30, what="consumer")
        procs.append(
            spawn(
                [
                    sys.executable,
                    "-m",
                    "examples.upload.server",
                    "--port",
                    str(port),
                    "--dir",
                    str(tmp_path / "data"),
                ],
                app_env,
                tmp_path / "server.log",
            )
        )
        wait_for(lambda: _up(port), timeout=30, what="upload server")
        procs.append(
            spawn(
                [*PGQUEUE, "worker", "--app", "examples.upload.worker", "--poll-interval", "0.2"],
                app_env,
                tmp_path / "worker.log",
            )
        )

        accepted = {}
        for name, data in files.items():
            status, headers, body = post(port, name, data)
            assert status == 202 and headers["Location"] == f"/uploads/{body['upload_id']}"
            accepted[body["upload_id"]] = (name, data, body["job_id"])

        for q, (out, _) in zip(f.queues, consumers, strict=True):
            proc = procs[f.queues.index(q)]
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"{q} got {out.read_text()}; worker: {(tmp_path / 'worker.log').read_text()[-3000:]}"
                )
            events = [json.loads(line) for line in out.read_text().splitlines()]
            assert len({e["message_id"] for e in events}) == 3
            for e in events:
                upload_id = e["event"]["context"]["upload_id"]
                name, data, _ = accepted[upload_id]
                assert e["event"]["file"]["sha256"] == hashlib.sha256(data).hexdigest()
                assert e["event"]["file"]["size"] == len(data)
                assert e["event"]["object"]["key"] == e["event"]["key"]
                assert e["event"]["object"]["bucket"] == bucket
            assert {e["event"]["context"]["upload_id"] for e in events} == set(accepted)

        wait_for(lambda: states(db, schema) == {"completed": 9}, timeout=30, what="9 completed")
        s3 = seaweed.client()
        for upload_id, (_, data, job_id) in accepted.items():
            status = get(port, f"/uploads/{upload_id}")
            assert status["job_id"] == job_id and status["size"] == len(data)
            assert [j["worker"].rsplit(".", 1)[1] for j in status["jobs"]] == [
                "ProcessFile",
                "B2Upload",
                "AmqpFanout",
            ]
            assert {j["state"] for j in status["jobs"]} == {"completed"}
            key = status["jobs"][1]["meta"]["key"]
            assert key.startswith(f"uploads/{upload_id}/")
            head = s3.head_object(Bucket=bucket, Key=key)
            assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        types = {get(port, f"/uploads/{u}")["jobs"][0]["meta"]["content_type"] for u in accepted}
        assert types == {"image/png", "text/plain", "video/mp4"}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
        f.delete()


def _up(port: int) -> bool:
    try:
        return get(port, "/healthz") == {"ok": True}
    except OSError:
        return False


def test_no_row_without_its_job(dsn, schema, db, tmp_path: Path, monkeypatch) -> None:
    """The row and the job commit together: a failed enqueue leaves neither."""
    uploads = server.Uploads(dsn, schema)
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    real = uploads.client.enqueue_many

    def enqueue_then_fail(specs, conn):
        real(specs, conn=conn)
        raise psycopg.OperationalError("the connection broke after the insert")

    monkeypatch.setattr(uploads.client, "enqueue_many", enqueue_then_fail)
    with pytest.raises(psycopg.OperationalError):
        uploads.record(path, "a.txt", 1)
    count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "uploads"))
    assert db.execute(count).fetchone()[0] == 0
    assert states(db, schema) == {}
    monkeypatch.undo()
    upload_id, job_id = uploads.record(path, "a.txt", 1)
    assert db.execute(count).fetchone()[0] == 1 and states(db, schema) == {"available": 1}
    row = db.execute(
        sql.SQL("SELECT job_id FROM {} WHERE id = %s").format(sql.Identifier(schema, "uploads")),
        [upload_id],
    ).fetchone()
    assert row == (job_id,)
    uploads.pool.close()
