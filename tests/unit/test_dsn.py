import pytest

from pgqueue import ConfigError
from pgqueue._dsn import describe, resolve_dsn, scrub

SECRET = "s3cr3t-pw"


def test_describe_hides_the_password() -> None:
    assert describe(f"postgresql://app:{SECRET}@db.example:6543/prod") == "app@db.example:6543/prod"
    assert SECRET not in describe(f"host=db user=app password={SECRET} dbname=prod")


def test_scrub_removes_passwords_in_any_form() -> None:
    text = f"postgresql://app:{SECRET}@h/db and password={SECRET} and password='{SECRET}'"
    assert SECRET not in scrub(text)
    assert SECRET not in scrub(f"libpq said: {SECRET}", f"postgresql://u:{SECRET}@h/d")


def test_resolve_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
    assert resolve_dsn(None) == "postgresql://u@h/d"
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(ConfigError, match="no database given"):
        resolve_dsn(None)


def test_malformed_dsn_is_one_clear_line_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_dsn(f"host=h password={SECRET} bogus_option=1")
    message = str(info.value)
    assert "not a valid PostgreSQL connection string" in message
    assert SECRET not in message and "\n" not in message
