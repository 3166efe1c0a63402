"""Where the machine's CPU goes during a measurement, from ``/proc`` (Linux).

Two snapshots of every process's user+system time, taken around a measured window, give the
CPU each group of processes used: the server under test (its process group), PostgreSQL
backends, Redis, the load generator, and everything else on the machine. Divided by the
requests served, that is the CPU cost of one request in each place.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    at: float
    machine_busy: float
    """Seconds of CPU the whole machine spent busy since boot (all cores)."""
    processes: dict[int, tuple[float, int, str]]
    """pid -> (CPU seconds, process group, command line)."""


def _machine_busy() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS


def snapshot() -> Snapshot:
    processes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        processes[int(entry)] = ((int(fields[11]) + int(fields[12])) / TICKS, int(fields[2]), command or name)
    return Snapshot(time.monotonic(), _machine_busy(), processes)


def _group(pid: int, group: int, command: str, server_group: int, generator_pid: int, database: str) -> str:
    if group == server_group:
        return "server"
    if pid == generator_pid:
        return "load generator"
    if command.startswith("postgres"):
        # Sessions of other databases are someone else's; the server's own processes (WAL
        # writer, checkpointer) work for whoever writes, here mostly the benchmark.
        is_session = "(" in command or "[local]" in command
        return "PostgreSQL" if not is_session or f" {database} " in command else "other"
    if command.startswith("redis-server"):
        return "Redis"
    return "other"


def usage(before: Snapshot, after: Snapshot, server_group: int, generator_pid: int, database: str) -> dict[str, float]:
    """CPU used per group between the snapshots, in cores (1.0 = one core fully busy)."""
    elapsed = max(after.at - before.at, 1e-9)
    used: Counter[str] = Counter()
    for pid, (seconds, group, command) in after.processes.items():
        earlier = before.processes.get(pid)
        spent = seconds - earlier[0] if earlier and earlier[2] == command else seconds
        if spent > 0:
            used[_group(pid, group, command, server_group, generator_pid, database)] += spent / elapsed
    machine = (after.machine_busy - before.machine_busy) / elapsed
    ours = sum(value for key, value in used.items() if key != "other")
    return {
        **{key: used.get(key, 0.0) for key in ("server", "PostgreSQL", "Redis", "load generator")},
        "other": max(0.0, machine - ours),
        "machine": machine,
    }
