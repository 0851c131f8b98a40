"""The names a worker process may run.

A job row names its worker; the process runs it only if a class or function was
registered under that name by a module it imported (``--app``). Nothing here imports a
path taken from the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._worker import Worker

_workers: dict[str, type[Worker]] = {}


def register(name: str, worker: type[Worker]) -> None:
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
