"""The core never loads the built-ins, and the built-ins load boto3/pika only when used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_importing_pgqueue_loads_no_builtin() -> None:
    modules = loaded_after("import pgqueue, pgqueue.cli")
    assert not {m for m in modules if m.startswith("pgqueue.builtins")}
    assert not modules & {"boto3", "botocore", "pika"}


def test_importing_the_builtins_registers_them_without_boto3_or_pika() -> None:
    modules = loaded_after(
        "import pgqueue, pgqueue.builtins\n"
        "assert {'pgqueue.builtins.ProcessFile', 'pgqueue.builtins.B2Upload',"
        " 'pgqueue.builtins.AmqpFanout'} <= set(pgqueue.registered())"
    )
    assert not modules & {"boto3", "botocore", "pika"}
