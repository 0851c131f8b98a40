"""``python -m tests.bench.peers NAME COMMAND JSON``: run one adapter command here.

Prints the command's result as one JSON line (the last line of stdout).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m tests.bench.peers NAME COMMAND JSON", file=sys.stderr)
        return 2
    name, command, raw = argv
    adapter = importlib.import_module(f"tests.bench.peers.{name}_")
    fn = getattr(adapter, command)
    result = fn(**json.loads(raw))
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    sys.stdout.flush()
    print(json.dumps(result if result is not None else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
