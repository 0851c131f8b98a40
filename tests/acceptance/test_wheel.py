"""The built wheel, installed into a fresh venv, gives a working ``pgqueue`` command."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_and_migrates(tmp_path: Path, dsn: str) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("pgqueue-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Shipped inside the package, never as top-level modules.
    assert not (site / "cli").exists() and not (site / "migrations").exists()
    assert (site / "pgqueue" / "cli" / "__init__.py").exists()
    assert list((site / "pgqueue" / "migrations").glob("0001_*.sql"))
    pgqueue = env_dir / "bin" / "pgqueue"
    help_text = subprocess.run(
        [str(pgqueue), "--help"], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert "migrate" in help_text and "worker" in help_text
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS wheel_check CASCADE")
    out = subprocess.run(
        [str(pgqueue), "migrate", "--dsn", dsn, "--schema", "wheel_check"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert "applied 0001_jobs" in out
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert (
            conn.execute(
                sql.SQL("SELECT count(*) FROM {}.pgqueue_jobs").format(
                    sql.Identifier("wheel_check")
                )
            ).fetchone()[0]
            == 0
        )
        conn.execute("DROP SCHEMA wheel_check CASCADE")
