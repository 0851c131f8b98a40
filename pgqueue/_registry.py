"""The names a worker process may run.

A job row names its worker; the process runs it only if a class or function was
registered under that name by a module it imported (``--app``). Nothing here imports a
path taken from the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._job import check_text

if TYPE_CHECKING:
    from ._worker import Worker

_workers: dict[str, type[Worker]] = {}


def check_name(name: object) -> str:
    """``name`` if a job row can hold it exactly, else a ConfigError saying why.

    The row's worker column is text of 1-255 characters (a check constraint). A NUL
    cannot be in PostgreSQL text, and libpq ends a parameter at the first NUL: the
    single enqueue, which sends the name as given (``JobSpec.with_defaults`` does not
    check what its class was checked for), would store the part before it, naming
    another worker. Checked once, when the worker is defined."""
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        raise ConfigError(f"a worker's name must be 1-255 characters of text, got {name!r}")
    check_text(name, f"worker name {name!r}")
    return name


def register(name: str, worker: type[Worker]) -> None:
    """Make ``worker`` runnable under ``name`` (checked by ``check_name``)."""
    check_name(name)
    existing = _workers.get(name)
    if (
        existing is not None
        and existing is not worker
        and (
            existing.__module__,
            existing.__qualname__,
        )
        != (worker.__module__, worker.__qualname__)
    ):
        raise ConfigError(
            f"two workers are registered as {name!r}: {existing.__module__}.{existing.__qualname__} "
            f"and {worker.__module__}.{worker.__qualname__}; give one of them another `name`"
        )
    _workers[name] = worker


def lookup(name: str) -> type[Worker] | None:
    return _workers.get(name)


def registered() -> dict[str, type[Worker]]:
    """A copy of the registry: name → worker class."""
    return dict(_workers)
