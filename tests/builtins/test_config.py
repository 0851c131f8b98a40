"""Settings from environment variables: defaults, parsing, one-line errors, no secrets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgqueue import ConfigError
from pgqueue.builtins._config import (
    AmqpSettings,
    B2Settings,
    BreakerSettings,
    MiB,
    RetrySettings,
    parse_size,
    part_size_for,
    redact_url,
)

B2 = {"PGQUEUE_B2_BUCKET": "photos"}


def test_b2_defaults() -> None:
    s = B2Settings.from_env(B2)
    assert s.bucket == "photos" and s.endpoint is None and s.region == "us-east-1"
    assert (s.key_id, s.application_key) == (None, None)
    assert s.multipart_threshold == 64 * MiB and s.part_size == 16 * MiB
    assert s.verify_etag is True
    assert s.destination == "s3:https://s3.amazonaws.com/photos"


def test_b2_region_comes_from_a_backblaze_endpoint() -> None:
    s = B2Settings.from_env({**B2, "PGQUEUE_B2_ENDPOINT": "s3.eu-central-003.backblazeb2.com"})
    assert s.endpoint == "https://s3.eu-central-003.backblazeb2.com"
    assert s.region == "eu-central-003"
    assert s.destination == "s3:https://s3.eu-central-003.backblazeb2.com/photos"
    explicit = B2Settings.from_env(
        {**B2, "PGQUEUE_B2_ENDPOINT": "http://127.0.0.1:9000/", "PGQUEUE_B2_REGION": "r1"}
    )
    assert explicit.endpoint == "http://127.0.0.1:9000" and explicit.region == "r1"


def test_b2_application_key_never_shows() -> None:
    s = B2Settings.from_env(
        {**B2, "PGQUEUE_B2_KEY_ID": "0041234", "PGQUEUE_B2_APPLICATION_KEY": "K004-very-secret"}
    )
    assert s.application_key == "K004-very-secret"
    assert "very-secret" not in repr(s) and "very-secret" not in s.destination


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PGQUEUE_B2_BUCKET is not set"),
        ({**B2, "PGQUEUE_B2_ENDPOINT": "ftp://x"}, "PGQUEUE_B2_ENDPOINT must be a URL"),
        ({**B2, "PGQUEUE_B2_KEY_ID": "k"}, "set both PGQUEUE_B2_KEY_ID and"),
        ({**B2, "PGQUEUE_B2_PART_SIZE": "1MiB"}, "PGQUEUE_B2_PART_SIZE must be at least 5MiB"),
        ({**B2, "PGQUEUE_B2_PART_SIZE": "lots"}, "PGQUEUE_B2_PART_SIZE must be a size like"),
        ({**B2, "PGQUEUE_B2_READ_TIMEOUT": "-1"}, "PGQUEUE_B2_READ_TIMEOUT must be a number"),
        ({**B2, "PGQUEUE_B2_VERIFY_ETAG": "maybe"}, "PGQUEUE_B2_VERIFY_ETAG must be one of"),
    ],
)
def test_b2_errors_name_the_variable(env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        B2Settings.from_env(env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_threshold_is_at_least_one_part() -> None:
    s = B2Settings.from_env(
        {**B2, "PGQUEUE_B2_MULTIPART_THRESHOLD": "1MB", "PGQUEUE_B2_PART_SIZE": "8MiB"}
    )
    assert s.multipart_threshold == s.part_size == 8 * MiB


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("16MiB", 16 * MiB),
        ("16mib", 16 * MiB),
        ("64MB", 64_000_000),
        ("1.5 GiB", 3 * 512 * MiB),
        ("5m", 5_000_000),
        ("200k", 200_000),
        ("1KiB", 1024),
        ("12b", 12),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size("X", text) == size


@given(st.integers(0, 5 * 1024**4), st.integers(5 * MiB, 5 * 1024**3))
def test_part_size_keeps_parts_within_limits(size: int, configured: int) -> None:
    part = part_size_for(size, configured)
    assert part >= 5 * MiB and part >= configured
    assert -(-size // part) <= 10_000


def test_amqp_settings() -> None:
    s = AmqpSettings.from_env({"AMQP_URL": "amqp://app:s3cret@mq.internal:5672/prod"})
    assert s.exchange == "pgqueue.events" and s.mandatory is False
    assert s.destination == "amqp://app@mq.internal:5672/prod"
    assert "s3cret" not in repr(s)
    own = AmqpSettings.from_env(
        {
            "AMQP_URL": "amqp://ignored/",
            "PGQUEUE_AMQP_URL": "amqps://app:pw@mq/%2F?heartbeat=30",
            "PGQUEUE_AMQP_EXCHANGE": "uploads",
            "PGQUEUE_AMQP_MANDATORY": "yes",
        }
    )
    assert own.url.startswith("amqps://app:pw@mq") and own.exchange == "uploads"
    assert own.mandatory is True and own.destination == "amqps://app@mq/%2F"


def test_amqp_errors_never_echo_the_password() -> None:
    with pytest.raises(ConfigError, match="PGQUEUE_AMQP_URL is not set"):
        AmqpSettings.from_env({})
    with pytest.raises(ConfigError) as err:
        AmqpSettings.from_env({"PGQUEUE_AMQP_URL": "http://user:hunter22@host/"})
    assert "hunter22" not in str(err.value) and "http://user@host/" in str(err.value)


def test_redact_url() -> None:
    assert redact_url("amqp://guest:guest@127.0.0.1:5672/%2F") == "amqp://guest@127.0.0.1:5672/%2F"
    assert redact_url("amqps://host/vh?x=1") == "amqps://host/vh"
    assert redact_url("amqp://u:p@[::1]:5672/") == "amqp://u@[::1]:5672/"


def test_breaker_and_retry_settings() -> None:
    assert BreakerSettings.from_env({}) == BreakerSettings(threshold=5, cooldown=30.0)
    assert BreakerSettings.from_env(
        {"PGQUEUE_BREAKER_THRESHOLD": "2", "PGQUEUE_BREAKER_COOLDOWN": "1.5"}
    ) == BreakerSettings(2, 1.5)
    with pytest.raises(ConfigError, match="PGQUEUE_BREAKER_THRESHOLD must be a whole number"):
        BreakerSettings.from_env({"PGQUEUE_BREAKER_THRESHOLD": "0"})
    assert RetrySettings.from_env({}) == RetrySettings(15.0, 21600.0)
    assert RetrySettings.from_env(
        {"PGQUEUE_BUILTINS_BACKOFF_BASE": "0.5", "PGQUEUE_BUILTINS_BACKOFF_CAP": "0.1"}
    ) == RetrySettings(0.5, 0.5)
