"""The upload endpoint: ``python -m examples.upload.server [--port 8000] [--dir DIR]``.

``POST /uploads?name=cat.png`` with the file as the request body (``curl --data-binary
@cat.png``) streams it to ``DIR``, then in one transaction records an ``uploads`` row
and enqueues the pipeline's first job, and answers ``202 Accepted`` at once: the
processing, the upload to B2 and the event happen in background jobs. If the
transaction fails, neither the row nor the job exists and the stored file is removed.

``GET /uploads/<id>`` shows the row and the state of each job of its pipeline.

Settings: ``DATABASE_URL``, ``PGQUEUE_SCHEMA`` (the pgqueue tables and the ``uploads``
table live there; default ``public``), ``UPLOAD_DIR``, ``UPLOAD_MAX_BYTES``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

import pgqueue
from examples.upload.worker import upload_job

CHUNK = 1024 * 1024

CREATE_UPLOADS = """
CREATE TABLE IF NOT EXISTS {uploads} (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    path text NOT NULL,
    size bigint NOT NULL,
    job_id bigint,
    received_at timestamptz NOT NULL DEFAULT now()
)"""


class Uploads:
    """The ``uploads`` table and the enqueue that goes with each row."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.client = pgqueue.Client(dsn, schema=schema)
        self.table = sql.Identifier(schema, "uploads")
        self.jobs = sql.Identifier(schema, "pgqueue_jobs")
        self.pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True)
        with self.pool.connection() as conn:
            conn.execute(sql.SQL(CREATE_UPLOADS).format(uploads=self.table))

    def record(self, path: Path, name: str, size: int) -> tuple[int, int]:
        """Insert the row and enqueue its pipeline in one transaction: (upload id, job id)."""
        with self.pool.connection() as conn, conn.transaction():
            upload_id = conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, path, size) VALUES (%s, %s, %s) RETURNING id"
                ).format(self.table),
                [name, str(path), size],
            ).fetchone()[0]
            (job,) = self.client.enqueue_many(
                [upload_job(str(path), name=name, upload_id=upload_id)], conn=conn
            )
            conn.execute(
                sql.SQL("UPDATE {} SET job_id = %s WHERE id = %s").format(self.table),
                [job.id, upload_id],
            )
        return upload_id, job.id

    def status(self, upload_id: int) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = cur.execute(
                sql.SQL(
                    "SELECT id, name, size, job_id, received_at::text FROM {} WHERE id = %s"
                ).format(self.table),
                [upload_id],
            ).fetchone()
            if row is None:
                return None
            row["jobs"] = cur.execute(
                sql.SQL(
                    "SELECT id, worker, state::text AS state, attempt, meta FROM {} "
                    "WHERE id = %(root)s OR args->'pipeline'->>'id' = %(root)s::text ORDER BY id"
                ).format(self.jobs),
                {"root": row["job_id"]},
            ).fetchall()
            return row


class Handler(BaseHTTPRequestHandler):
    server_version = "pgqueue-upload/1"
    uploads: Uploads
    directory: Path
    max_bytes: int

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") != "/uploads":
            return self.reply(HTTPStatus.NOT_FOUND, {"error": "POST /uploads?name=FILE"})
        name = (parse_qs(url.query).get("name") or [""])[0] or self.headers.get("X-Filename", "")
        if not name:
            return self.reply(HTTPStatus.BAD_REQUEST, {"error": "give the file name: ?name=..."})
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self.reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
        size = int(length)
        if size > self.max_bytes:
            return self.reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"over {self.max_bytes} bytes"}
            )
        final = self.directory / uuid.uuid4().hex
        partial = final.with_name(f".incoming-{final.name}")
        try:
            self.receive(partial, size)
            os.replace(partial, final)
        except (OSError, ValueError) as exc:
            partial.unlink(missing_ok=True)
            return self.reply(HTTPStatus.BAD_REQUEST, {"error": f"upload interrupted: {exc}"})
        try:
            upload_id, job_id = self.uploads.record(final, name, size)
        except (psycopg.Error, pgqueue.PgQueueError) as exc:
            final.unlink(missing_ok=True)  # no row, no job: no file either
            self.log_error("could not record the upload: %s", type(exc).__name__)
            return self.reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "try again later"})
        self.reply(
            HTTPStatus.ACCEPTED,
            {"upload_id": upload_id, "job_id": job_id, "status": f"/uploads/{upload_id}"},
            location=f"/uploads/{upload_id}",
        )

    def receive(self, path: Path, size: int) -> None:
        """Stream ``size`` bytes of the body to ``path``, never all of it in memory."""
        left = size
        with open(path, "wb") as f:
            while left:
                chunk = self.rfile.read(min(CHUNK, left))
                if not chunk:
                    raise ValueError(f"the body ended after {size - left} of {size} bytes")
                f.write(chunk)
                left -= len(chunk)
            f.flush()
            os.fsync(f.fileno())

    def do_GET(self) -> None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts == ["healthz"]:
            return self.reply(HTTPStatus.OK, {"ok": True})
        if len(parts) == 2 and parts[0] == "uploads" and parts[1].isdigit():
            status = self.uploads.status(int(parts[1]))
            if status is not None:
                return self.reply(HTTPStatus.OK, status)
        self.reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def reply(self, status: HTTPStatus, body: dict[str, Any], location: str | None = None) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        if status >= 400:
            self.send_header("Connection", "close")  # the unread body must not be parsed
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--dir", default=os.environ.get("UPLOAD_DIR", "upload-data"))
    args = parser.parse_args(argv)
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        sys.exit("DATABASE_URL is not set")
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    Handler.uploads = Uploads(dsn, os.environ.get("PGQUEUE_SCHEMA") or "public")
    Handler.directory = directory
    Handler.max_bytes = int(os.environ.get("UPLOAD_MAX_BYTES", str(5 * 1024**3)))
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    print(
        f"listening on http://{args.host}:{httpd.server_port}, storing in {directory}", flush=True
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
