"""Prometheus metrics for a worker node (``pip install pgqueue[prometheus]``).

Two sources. This process's job events feed counters and histograms: jobs by queue,
worker and outcome, errors by type, run time, queue wait (scheduled_at → attempted_at),
and the circuit breakers of the built-in workers. The database feeds
gauges of jobs by queue and state and the age of each queue's oldest available job,
refreshed on an interval by ``QueueStats`` on its own connection and thread; the
refresh counts the backlog exactly and estimates only huge final states (see
``pgqueue._ops.queue_overview``), so it stays cheap on big tables.

``Exporter`` ties them together behind ``start()``/``stop()`` and serves ``/metrics``
over HTTP (127.0.0.1 by default): that is what ``pgqueue worker --metrics-port`` runs.
Every metric is listed, with its labels, in docs/operations.md.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import _admin, _events, _ops
from .._job import Job
from .._outcomes import Cancel, Discard, Transition
from .._service import jittered, reconnect_delay
from .._states import STATES
from .logging import outcome_name

log = logging.getLogger("pgqueue.metrics")

# Seconds. Run times and queue waits share the fine end; the coarse end differs (a run
# seldom exceeds an hour, a scheduled job may wait a day).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (*_BUCKETS, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (*_BUCKETS, 300, 900, 3600, 21600, 86400)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class JobMetrics:
    """Counters, histograms and gauges fed by this process's job and breaker events."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.jobs = Counter(
            "pgqueue_jobs",
            "Finished job attempts by outcome (completed, retryable, discarded, cancelled, snoozed).",
            ["queue", "worker", "outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "pgqueue_job_errors",
            "Failed job attempts by exception type.",
            ["queue", "worker", "error"],
            registry=registry,
        )
        self.duration = Histogram(
            "pgqueue_job_duration_seconds",
            "Run time of one job attempt, perform() start to outcome.",
            ["queue", "worker"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "pgqueue_job_queue_wait_seconds",
            "Time a job waited between becoming due (scheduled_at) and being claimed (attempted_at).",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.breaker_state = Gauge(
            "pgqueue_breaker_state",
            "Circuit breaker of a built-in worker's destination: 0 closed, 1 half-open, 2 open.",
            ["name"],
            registry=registry,
        )
        self.breaker_failures = Gauge(
            "pgqueue_breaker_failures",
            "Consecutive failures the circuit breaker has counted.",
            ["name"],
            registry=registry,
        )
        self._unsubscribe: list[Callable[[], None]] = []

    def install(self) -> None:
        """Subscribe to the events (idempotent)."""
        if self._unsubscribe:
            return
        for event, handler in (
            ("job_start", self.on_start),
            ("job_stop", self.on_stop),
            ("job_exception", self.on_exception),
            ("breaker_change", self.on_breaker),
        ):
            self._unsubscribe.append(_events.subscribe(event, handler))

    def uninstall(self) -> None:
        while self._unsubscribe:
            self._unsubscribe.pop()()

    def on_start(self, job: Job, **_: Any) -> None:
        if job.attempted_at is not None and job.scheduled_at is not None:
            waited = (job.attempted_at - job.scheduled_at).total_seconds()
            self.wait.labels(job.queue).observe(max(waited, 0.0))

    def on_stop(self, job: Job, transition: Transition, duration: float, **_: Any) -> None:
        self.jobs.labels(job.queue, job.worker, outcome_name(transition.state)).inc()
        self.duration.labels(job.queue, job.worker).observe(duration)

    def on_exception(self, job: Job, error: BaseException, **_: Any) -> None:
        if isinstance(error, Cancel | Discard):
            return  # the job chose its outcome: not an error
        self.errors.labels(job.queue, job.worker, type(error).__qualname__).inc()

    def on_breaker(self, name: str, state: str, failures: int = 0, **_: Any) -> None:
        self.breaker_state.labels(name).set(BREAKER_STATES.get(state, 2))
        self.breaker_failures.labels(name).set(failures)


class QueueStats(Collector):
    """Gauges of jobs by queue and state, read from the database every ``interval`` s.

    A thread refreshes a snapshot; a scrape only reads it, so scraping never touches the
    database. A failed refresh keeps the last snapshot (see
    ``pgqueue_stats_last_success_timestamp_seconds``) and retries with backoff.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        interval: float = 15.0,
        exact_below: int = 250_000,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.dsn = dsn
        self.schema = schema
        self.interval = interval
        self.exact_below = exact_below
        self._registry = registry
        self._snapshot: tuple[_ops.Overview, dict[str, dict[str, Any]]] | None = None
        self._last_success = 0.0
        self._errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self.refreshed = threading.Event()  # set after each successful refresh (tests)

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        if self._registry is not None:
            self._registry.register(self)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pgqueue-metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        if self._registry is not None:
            self._registry.unregister(self)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:
                failures += 1
                self._errors += 1
                self._close()
                if failures == 1:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    log.warning("metrics: cannot refresh queue gauges (%s); retrying", first)
                delay = min(reconnect_delay(failures), self.interval)
            else:
                if failures:
                    log.info("metrics: queue gauges refreshed again")
                failures = 0
                delay = jittered(self.interval)
            self._stop.wait(delay)
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # ---- the work ---------------------------------------------------------------------

    def refresh(self) -> _ops.Overview:
        """Read the counts now (on this thread's connection) and publish them."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=10,
                application_name="pgqueue-metrics",
                # A gauge is not worth a long query: give up and keep the last values.
                options="-c statement_timeout=10000",
            )
        overview = _ops.queue_overview(self._conn, self.schema, exact_below=self.exact_below)
        controls = _admin.queue_controls(self._conn, self.schema)
        self._snapshot = (overview, controls)
        self._last_success = time.time()
        self.refreshed.set()
        return overview

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "pgqueue_queue_jobs",
            "Jobs by queue and state in the database (final states above a size are estimated).",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "pgqueue_queue_oldest_available_seconds",
            "How long the oldest available job of the queue has waited (0: none waiting).",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "pgqueue_queue_paused", "1 while the queue is paused (pgqueue pause).", labels=["queue"]
        )
        limit = GaugeMetricFamily(
            "pgqueue_queue_limit",
            "Concurrency override set by pgqueue scale (absent: each node's own).",
            labels=["queue"],
        )
        refresh = GaugeMetricFamily(
            "pgqueue_stats_refresh_seconds", "Time the last refresh of the queue gauges took."
        )
        last = GaugeMetricFamily(
            "pgqueue_stats_last_success_timestamp_seconds",
            "Unix time of the last successful refresh of the queue gauges.",
        )
        errors = CounterMetricFamily(
            "pgqueue_stats_refresh_errors", "Failed refreshes of the queue gauges."
        )
        snapshot = self._snapshot
        if snapshot is not None:
            overview, controls = snapshot
            for queue in sorted(set(overview.counts) | set(controls)):
                per_state = overview.counts.get(queue) or dict.fromkeys(STATES, 0)
                for state in STATES:
                    jobs.add_metric([queue, state], per_state.get(state, 0))
                oldest.add_metric([queue], overview.oldest_available.get(queue, 0.0))
                control = controls.get(queue) or {}
                paused.add_metric([queue], 1.0 if control.get("paused") else 0.0)
                if control.get("limit") is not None:
                    limit.add_metric([queue], control["limit"])
            refresh.add_metric([], overview.seconds)
            last.add_metric([], self._last_success)
        errors.add_metric([], self._errors)
        yield from (jobs, oldest, paused, limit, refresh, last, errors)


class Exporter:
    """Job metrics, queue gauges and the ``/metrics`` HTTP endpoint of one process."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        port: int,
        host: str = "127.0.0.1",
        interval: float = 15.0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.jobs = JobMetrics(registry)
        self.stats = QueueStats(dsn, schema, interval=interval, registry=registry)
        self._server: Any = None

    def start(self) -> None:
        """Bind the port first (an ``OSError`` if taken), then start collecting."""
        if self._server is not None:
            return
        from prometheus_client import start_http_server

        self._server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_port
        self.jobs.install()
        self.stats.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.jobs.uninstall()
        self.stats.stop()
        server.shutdown()
        server.server_close()
