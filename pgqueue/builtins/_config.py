"""Settings of the built-in workers, read from environment variables. Pure.

Each ``from_env`` takes a mapping (``os.environ`` in production, a dict in tests) and
returns a frozen value, or raises ``ConfigError`` with one line saying which variable,
what was expected and what was given. Secrets (the B2 application key, the AMQP
password) never appear in a ``repr`` or a message: ``destination`` names a server
without them. docs/builtins.md lists every variable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .._errors import ConfigError

MiB = 1024 * 1024
# S3 (and B2) refuse parts under 5 MiB (except the last) and more than 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_B2_REGION = re.compile(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$")


def parse_size(name: str, text: str) -> int:
    """``"16MiB"``, ``"64MB"``, ``"1048576"`` → bytes (``KiB``/``MiB``/``GiB`` are powers of 2)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"{name} must be a size like 16MiB, 64MB or 1048576, got {text!r}")
    unit = (m.group(2) or "").lower()
    factor = 1024 ** "bkmgt".index(unit[0]) if "i" in unit else _UNITS[unit[:1]]
    return int(float(m.group(1)) * factor)


def parse_seconds(name: str, text: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(text.strip().removesuffix("s"))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a number of seconds >= {minimum:g}, got {text!r}")
    return value


def parse_int(name: str, text: str, *, minimum: int = 1) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {text!r}")
    return value


def parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {text!r}")


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value is not None and value.strip() else None


@dataclass(frozen=True, slots=True)
class B2Settings:
    """Where and how B2Upload stores objects (the S3 API of Backblaze B2, or any S3)."""

    bucket: str
    endpoint: str | None = None  # None: AWS S3 itself
    region: str = "us-east-1"
    key_id: str | None = None  # None: boto3's own chain (AWS_ACCESS_KEY_ID, ~/.aws, ...)
    application_key: str | None = field(default=None, repr=False)
    multipart_threshold: int = 64 * MiB
    part_size: int = 16 * MiB
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify_etag: bool = True

    @property
    def destination(self) -> str:
        """The breaker's and the messages' name for this store: endpoint and bucket."""
        return f"s3:{(self.endpoint or 'https://s3.amazonaws.com').rstrip('/')}/{self.bucket}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> B2Settings:
        bucket = _get(env, "PGQUEUE_B2_BUCKET")
        if bucket is None:
            raise ConfigError("PGQUEUE_B2_BUCKET is not set: B2Upload needs the bucket name")
        endpoint = _get(env, "PGQUEUE_B2_ENDPOINT")
        if endpoint is not None:
            endpoint = endpoint.strip()
            if "://" not in endpoint:
                endpoint = "https://" + endpoint
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    "PGQUEUE_B2_ENDPOINT must be a URL like "
                    f"https://s3.us-west-004.backblazeb2.com, got {endpoint!r}"
                )
        region = _get(env, "PGQUEUE_B2_REGION") or _region_of(endpoint) or "us-east-1"
        key_id = _get(env, "PGQUEUE_B2_KEY_ID")
        app_key = _get(env, "PGQUEUE_B2_APPLICATION_KEY")
        if (key_id is None) != (app_key is None):
            raise ConfigError(
                "set both PGQUEUE_B2_KEY_ID and PGQUEUE_B2_APPLICATION_KEY, or neither "
                "(then AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are used)"
            )
        threshold = parse_size(
            "PGQUEUE_B2_MULTIPART_THRESHOLD", env.get("PGQUEUE_B2_MULTIPART_THRESHOLD", "64MiB")
        )
        part_size = parse_size("PGQUEUE_B2_PART_SIZE", env.get("PGQUEUE_B2_PART_SIZE", "16MiB"))
        if part_size < MIN_PART_SIZE:
            raise ConfigError(
                f"PGQUEUE_B2_PART_SIZE must be at least 5MiB (the S3 minimum), got {part_size} bytes"
            )
        if threshold < part_size:
            threshold = part_size  # a multipart upload of a single part gains nothing
        return cls(
            bucket=bucket.strip(),
            endpoint=endpoint.rstrip("/") if endpoint else None,
            region=region.strip(),
            key_id=key_id.strip() if key_id else None,
            application_key=app_key.strip() if app_key else None,
            multipart_threshold=threshold,
            part_size=part_size,
            connect_timeout=parse_seconds(
                "PGQUEUE_B2_CONNECT_TIMEOUT",
                env.get("PGQUEUE_B2_CONNECT_TIMEOUT", "10"),
                minimum=0.1,
            ),
            read_timeout=parse_seconds(
                "PGQUEUE_B2_READ_TIMEOUT", env.get("PGQUEUE_B2_READ_TIMEOUT", "60"), minimum=0.1
            ),
            verify_etag=parse_bool(
                "PGQUEUE_B2_VERIFY_ETAG", env.get("PGQUEUE_B2_VERIFY_ETAG", "1")
            ),
        )


def _region_of(endpoint: str | None) -> str | None:
    """B2 endpoints name their region: ``s3.us-west-004.backblazeb2.com`` → ``us-west-004``."""
    if endpoint is None:
        return None
    m = _B2_REGION.match(urlsplit(endpoint).hostname or "")
    return m.group(1) if m else None


def part_size_for(size: int, configured: int) -> int:
    """The part size to use for a ``size``-byte object: the configured one, grown so the
    upload needs at most 10,000 parts."""
    return max(configured, MIN_PART_SIZE, -(-size // MAX_PARTS))


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """Where AmqpFanout publishes: the broker URL and the fanout exchange."""

    url: str = field(repr=False)
    exchange: str = "pgqueue.events"
    mandatory: bool = False

    @property
    def destination(self) -> str:
        return redact_url(self.url)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AmqpSettings:
        url = _get(env, "PGQUEUE_AMQP_URL") or _get(env, "AMQP_URL")
        if url is None:
            raise ConfigError(
                "PGQUEUE_AMQP_URL is not set: AmqpFanout needs a broker URL like "
                "amqp://user:password@host:5672/%2F"
            )
        url = url.strip()
        if urlsplit(url).scheme not in ("amqp", "amqps") or not urlsplit(url).hostname:
            raise ConfigError(
                f"PGQUEUE_AMQP_URL must be an amqp:// or amqps:// URL, got {redact_url(url)!r}"
            )
        exchange = (_get(env, "PGQUEUE_AMQP_EXCHANGE") or "pgqueue.events").strip()
        if len(exchange) > 255:
            raise ConfigError("PGQUEUE_AMQP_EXCHANGE must be at most 255 characters")
        return cls(
            url=url,
            exchange=exchange,
            mandatory=parse_bool("PGQUEUE_AMQP_MANDATORY", env.get("PGQUEUE_AMQP_MANDATORY", "0")),
        )


def redact_url(url: str) -> str:
    """``amqp://user:secret@host/vhost`` → ``amqp://user@host/vhost`` (also drops the query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    user = f"{quote(unquote(parts.username), safe='')}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


def password_of(url: str) -> str | None:
    try:
        secret = urlsplit(url).password
    except ValueError:
        return None
    return unquote(secret) if secret else None


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a destination's circuit opens (``threshold`` transport failures in a row),
    how long it stays open before one probe job may try it (``cooldown`` seconds), and
    for how long after the breaker first held a job back its failed probes are free
    (``patience`` seconds): past it a failed probe costs the job an attempt, so a
    destination that never comes back, or a job whose own request always fails, still
    ends discarded."""

    threshold: int = 5
    cooldown: float = 30.0
    patience: float = 3 * 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BreakerSettings:
        return cls(
            threshold=parse_int(
                "PGQUEUE_BREAKER_THRESHOLD", env.get("PGQUEUE_BREAKER_THRESHOLD", "5")
            ),
            cooldown=parse_seconds(
                "PGQUEUE_BREAKER_COOLDOWN", env.get("PGQUEUE_BREAKER_COOLDOWN", "30"), minimum=0.1
            ),
            patience=parse_seconds(
                "PGQUEUE_BREAKER_PATIENCE", env.get("PGQUEUE_BREAKER_PATIENCE", "259200")
            ),
        )


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """The backoff of the built-in workers after a failed attempt (the README's formula
    with another base and cap)."""

    base: float = 15.0
    cap: float = 6 * 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetrySettings:
        base = parse_seconds(
            "PGQUEUE_BUILTINS_BACKOFF_BASE",
            env.get("PGQUEUE_BUILTINS_BACKOFF_BASE", "15"),
            minimum=0.01,
        )
        cap = parse_seconds(
            "PGQUEUE_BUILTINS_BACKOFF_CAP",
            env.get("PGQUEUE_BUILTINS_BACKOFF_CAP", "21600"),
            minimum=0.01,
        )
        return cls(base=base, cap=max(cap, base))
