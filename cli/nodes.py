"""``pgqueue nodes``: the worker nodes the database knows, alive or not.

One row per node with its queues, its last heartbeat, whether it holds the leader lease
and how many jobs it has in ``executing``. A dead node's jobs are rescued by the leader
once its heartbeat has expired; this is where an operator sees that happen. Jobs held
by a name with no heartbeat row at all are listed too (``alive`` false).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from pgqueue import _admin, _ops

from ._common import db_options, open_schema, reports_errors
from ._format import age, echo_json, stamp, table


def _queues_text(queues: Any) -> str:
    if isinstance(queues, dict):
        return ",".join(f"{q}:{n}" for q, n in queues.items())
    if isinstance(queues, list):
        return ",".join(map(str, queues))
    return "" if queues is None else str(queues)


@click.command()
@db_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (documented).")
@reports_errors
def nodes(dsn: str | None, schema: str, as_json: bool) -> None:
    """List worker nodes: queues, heartbeat, leader, executing jobs."""
    with open_schema(dsn, schema) as conn:
        rows = _admin.list_nodes(conn, schema)
        executing = _ops.executing_by_node(conn, schema)
    known = {row["name"] for row in rows}
    data = [
        {
            "name": row["name"],
            "queues": row.get("queues"),
            "started_at": row.get("started_at"),
            "heartbeat_at": row.get("heartbeat_at"),
            "expires_at": row.get("expires_at"),
            "alive": bool(row.get("alive")),
            "leader": bool(row.get("leader")),
            "executing": executing.get(row["name"], 0),
        }
        for row in rows
    ]
    for name, n in sorted(executing.items(), key=lambda kv: str(kv[0])):
        if name not in known:
            data.append(
                {
                    "name": name,
                    "queues": None,
                    "started_at": None,
                    "heartbeat_at": None,
                    "expires_at": None,
                    "alive": False,
                    "leader": False,
                    "executing": n,
                }
            )
    if as_json:
        echo_json({"nodes": data})
        return
    if not data:
        click.echo("no nodes")
        return
    now = datetime.now(UTC)
    lines = [
        [
            node["name"] or "(none)",
            "yes" if node["alive"] else "NO",
            "yes" if node["leader"] else "",
            node["executing"],
            _queues_text(node["queues"]),
            stamp(node["started_at"]),
            age((now - node["heartbeat_at"]).total_seconds()) + " ago"
            if node["heartbeat_at"]
            else "never",
        ]
        for node in data
    ]
    headers = ["NODE", "ALIVE", "LEADER", "EXECUTING", "QUEUES", "STARTED", "HEARTBEAT"]
    click.echo(table(headers, lines, right={3}))
