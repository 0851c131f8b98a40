"""Prometheus (issue 4, item 3): ``pgqueue worker --metrics-port`` scraped over real HTTP
while jobs run, and the numbers checked against what the jobs did."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from pgqueue import _events
from pgqueue.builtins import BreakerSettings, breaker_for
from pgqueue.builtins._breaker import reset_breakers
from pgqueue.integrations.prometheus import JobMetrics, QueueStats
from tests.helpers import wait_for
from tests.ops.app import Boom, Hold, Ok
from tests.ops.support import eventually, reset, run, scrape, value, worker


@pytest.fixture(autouse=True)
def _clean(db, schema) -> None:
    reset(db, schema)


def test_metrics_endpoint_counts_what_the_jobs_did(env, client, db, schema) -> None:
    ok = client.enqueue_many([Ok.new({"n": i}) for i in range(5)])
    boom = client.enqueue_many([Boom.new({"n": i}) for i in range(2)])  # 2 attempts each
    Ok.enqueue({}, client=client, schedule_in=3600)
    hold = Hold.enqueue({"sleep": 60}, client=client)
    args = ["--queues", "ops:4", "--shutdown-grace", "1"]
    args += ["--metrics-port", "0", "--metrics-interval", "0.3"]
    with worker(*args, env=env) as w:
        port = w.wait_line(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1)
        url = f"http://127.0.0.1:{port}/metrics"
        ok_w, boom_w = {"queue": "ops", "worker": Ok.name}, {"queue": "ops", "worker": Boom.name}

        def job_counters() -> dict:
            s = scrape(url)
            assert value(s, "pgqueue_jobs_total", **ok_w, outcome="completed") == 5
            assert value(s, "pgqueue_jobs_total", **boom_w, outcome="retryable") == 2
            assert value(s, "pgqueue_jobs_total", **boom_w, outcome="discarded") == 2
            return s

        s = eventually(job_counters, what="job counters")
        assert value(s, "pgqueue_job_errors_total", **boom_w, error="ValueError") == 4
        assert value(s, "pgqueue_job_duration_seconds_count", **ok_w) == 5
        assert value(s, "pgqueue_job_duration_seconds_count", **boom_w) == 4
        assert value(s, "pgqueue_job_duration_seconds_bucket", **ok_w, le="+Inf") == 5
        # Every claim observed its wait: 5 + 4 attempts + the running Hold.
        assert value(s, "pgqueue_job_queue_wait_seconds_count", queue="ops") == 10
        assert 0 <= value(s, "pgqueue_job_queue_wait_seconds_sum", queue="ops") < 60

        def gauges() -> dict:
            s = scrape(url)
            counts = {
                state: value(s, "pgqueue_queue_jobs", queue="ops", state=state)
                for state in ("available", "scheduled", "executing", "completed", "discarded")
            }
            assert counts == {
                "available": 0,
                "scheduled": 1,
                "executing": 1,
                "completed": 5,
                "discarded": 2,
            }
            return s

        s = eventually(gauges, what="queue gauges")
        assert value(s, "pgqueue_queue_oldest_available_seconds", queue="ops") == 0
        assert value(s, "pgqueue_queue_paused", queue="ops") == 0
        assert value(s, "pgqueue_stats_refresh_seconds") > 0
        assert value(s, "pgqueue_stats_refresh_errors_total") == 0

        run("pause", "ops", env=env)
        wait_for(lambda: value(scrape(url), "pgqueue_queue_paused", queue="ops") == 1)
        run("cancel", str(hold.id), env=env)
        wait_for(lambda: value(scrape(url), "pgqueue_queue_jobs", queue="ops", state="cancelled"))
    assert len(ok) == 5 and len(boom) == 2


def test_breaker_gauge_follows_breaker_change_events() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    metrics.install()
    try:
        _events.emit("breaker_change", name="b2", state="open", failures=5)
        _events.emit("breaker_change", name="amqp", state="half_open", failures=3)
        assert registry.get_sample_value("pgqueue_breaker_state", {"name": "b2"}) == 2
        assert registry.get_sample_value("pgqueue_breaker_failures", {"name": "b2"}) == 5
        assert registry.get_sample_value("pgqueue_breaker_state", {"name": "amqp"}) == 1
        _events.emit("breaker_change", name="b2", state="closed", failures=0)
        assert registry.get_sample_value("pgqueue_breaker_state", {"name": "b2"}) == 0
    finally:
        metrics.uninstall()


def test_breaker_failures_gauge_counts_while_the_circuit_is_closed() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    metrics.install()
    name = "s3:http://metrics-test/bucket"
    try:
        breaker = breaker_for(name, BreakerSettings(threshold=3, cooldown=1))
        breaker.failed()
        breaker.failed()
        assert registry.get_sample_value("pgqueue_breaker_failures", {"name": name}) == 2
        assert registry.get_sample_value("pgqueue_breaker_state", {"name": name}) == 0
        breaker.succeeded()
        assert registry.get_sample_value("pgqueue_breaker_failures", {"name": name}) == 0
    finally:
        metrics.uninstall()
        reset_breakers()


def test_queue_stats_survive_an_unreachable_database(schema) -> None:
    registry = CollectorRegistry()
    stats = QueueStats(
        "postgresql://nobody@127.0.0.1:1/none", schema, interval=0.05, registry=registry
    )
    stats.start()
    try:
        wait_for(lambda: registry.get_sample_value("pgqueue_stats_refresh_errors_total") >= 2)
    finally:
        stats.stop()
        stats.stop()  # idempotent
    assert registry.get_sample_value("pgqueue_stats_refresh_errors_total") is None  # unregistered
