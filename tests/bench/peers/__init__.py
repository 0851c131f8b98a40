"""One adapter per job queue (pgqueue itself included), all with the same shape.

An adapter module is imported in two places. The bench process (pgqueue's venv) reads
its constants only: ``NAME``, ``VENV``, ``INSTALLED_TABLE``, ``UNFINISHED_SQL``,
``RESET_SQL``, ``KINDS``. Its functions run in a subprocess of the adapter's own venv
through ``python -m tests.bench.peers NAME COMMAND JSON`` (see ``__main__``), so an
adapter imports its library inside functions, never at module level (pgqueue's adapter
is the exception: its venv is the bench's own).

Commands: ``setup(dsn)``, ``insert_single(dsn, n)``, ``insert_bulk(dsn, n)``,
``prefill(dsn, n, kind)``, ``work(dsn, concurrency, kind)`` (runs until SIGTERM) and
``latency(dsn, n, interval, starts)``. Optional: ``worker_argv(python, dsn,
concurrency, kind)`` when the library has its own worker command.
"""

ADAPTERS = ("pgqueue", "procrastinate", "pgqueuer", "chancy", "oban")
