"""CPU time the hypervisor took from this machine while a figure was measured.

On a virtual machine, another tenant's load shows up as "steal": time this machine's
CPUs were ready to run and were not given a physical core. A figure measured while a
fifth of the CPU was stolen is slower for a reason that has nothing to do with the code
under test, and the same workload can read 30 % apart in two runs of one sitting. The
bench records the share stolen during each measurement so a reader can tell a slow
figure from a disturbed one. Linux only (``/proc/stat``); elsewhere nothing is recorded.
"""

from __future__ import annotations

from pathlib import Path

STAT = Path("/proc/stat")


def parse(stat_text: str) -> tuple[int, int] | None:
    """(stolen, total) clock ticks of all CPUs from the text of ``/proc/stat``."""
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # user nice system idle iowait irq softirq steal [guest guest_nice]: guest
            # time is already counted in user and nice, so it is left out of the total.
            ticks = [int(x) for x in fields[1:9]]
            if len(ticks) < 8:
                return None
            return ticks[7], sum(ticks)
    return None


def snapshot() -> tuple[int, int] | None:
    try:
        return parse(STAT.read_text())
    except OSError:
        return None


def share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The fraction of CPU time stolen between two snapshots (None when unknown)."""
    if before is None or after is None:
        return None
    total = after[1] - before[1]
    if total <= 0:
        return None
    return max(0, after[0] - before[0]) / total
