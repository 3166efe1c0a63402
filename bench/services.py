"""What a benchmark phase runs against: its own PostgreSQL database, its own RQ queue in the
shared Redis, and real processes (``sla-guard serve``/``worker``, the baseline's gunicorn).

Processes start in their own session with their own environment and log to files; they are
stopped by process group (SIGTERM, then SIGKILL). A queue's keys are removed by name and by the
job ids the queue refers to: the shared Redis is never flushed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from redis import Redis
from sqlalchemy import create_engine, text

CLI = [sys.executable, "-m", "sla_guard.cli"]
"""The ``sla-guard`` console script, run by the interpreter running the benchmark."""

_INHERITED_OUT = ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
"""Variables of the calling shell never passed on: each process gets the benchmark's own."""


def base_env() -> dict[str, str]:
    """The calling environment without any sla-guard setting of its own."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED_OUT and not key.startswith("SLA_GUARD_")
    }


def reset_database(admin_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``admin_url``; return its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def clean_queue(redis: Redis, queue: str) -> int:
    """Delete every Redis key of RQ queue ``queue`` and of the jobs it refers to; return how many.

    Job ids come from the queue list and the queue's registries (process jobs have random ids),
    plus every ``rq:job:<queue>-*`` key (timers and alert retries are named after the queue).
    """
    registries = [f"rq:{kind}:{queue}" for kind in ("wip", "finished", "failed", "deferred", "scheduled", "canceled")]
    job_ids = {member.decode() for member in redis.lrange(f"rq:queue:{queue}", 0, -1)}
    for key in registries:
        job_ids.update(member.decode() for member in redis.zrange(key, 0, -1))
    keys = set()
    for job_id in job_ids:
        keys.update(
            (f"rq:job:{job_id}", f"rq:job:{job_id}:dependents", f"rq:results:{job_id}", f"rq:executions:{job_id}")
        )
    for pattern in (f"rq:job:{queue}-*", f"rq:execution:{queue}-*", f"*{queue}*"):
        keys.update(key.decode() for key in redis.scan_iter(match=pattern, count=1000))
    removed = 0
    ordered = sorted(keys)
    for start in range(0, len(ordered), 500):
        removed += redis.delete(*ordered[start : start + 500])
    redis.srem("rq:queues", f"rq:queue:{queue}")
    return removed


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal the process group a benchmark process leads (its gunicorn workers, its scheduler)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def redis_flushes(redis: Redis) -> int:
    """How many ``FLUSHALL``/``FLUSHDB`` the Redis server has run since it started.

    Another client flushing the shared Redis during a phase wipes the phase's queue and timers
    (sla-guard's reconciler rebuilds them from the database), which makes its timings meaningless.
    """
    stats = redis.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_flushall", "cmdstat_flushdb"))


class Processes:
    """Starts and stops the processes of one phase; each logs to ``<log_dir>/<name>.log``."""

    def __init__(self, env: dict[str, str], log_dir: Path, cwd: Path):
        self.env = env
        self.log_dir = log_dir
        self.cwd = cwd
        self.running: dict[str, subprocess.Popen] = {}
        self.argv: dict[str, list[str]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        """Start ``argv`` as process ``name``; a restarted process appends to the same log."""
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running[name] = process
        self.argv[name] = argv
        return process

    def restart(self, name: str) -> subprocess.Popen:
        """Start process ``name`` again with the same command (it has exited)."""
        return self.start(name, self.argv[name])

    def sla_guard(self, name: str, *args: str) -> subprocess.Popen:
        """Start ``sla-guard <args>`` as process ``name``."""
        return self.start(name, CLI + list(args))

    def run_cli(self, *args: str, timeout_s: float = 120) -> str:
        """Run a short ``sla-guard`` command to completion; raise with its output if it fails."""
        done = subprocess.run(
            CLI + list(args), env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=timeout_s
        )
        if done.returncode != 0:
            raise RuntimeError(f"sla-guard {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def lines_with(self, name: str, needle: str) -> list[str]:
        """The lines of process ``name``'s log that contain ``needle``."""
        return [line for line in self.log(name).splitlines() if needle in line]

    def exit_code(self, name: str) -> int | None:
        """The exit code of process ``name``, or None while it runs."""
        return self.running[name].poll()

    def wait_http(self, name: str, url: str, timeout_s: float = 60, ok: tuple[int, ...] = (200,)) -> None:
        """Wait until ``GET url`` answers one of ``ok``; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=1).status_code in ok:
                    return
            except requests.RequestException:
                pass
            if self.running[name].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not become ready at {url}:\n{self.log(name)[-4000:]}")

    def wait_log(self, name: str, needle: str, timeout_s: float = 60) -> None:
        """Wait until process ``name`` logs ``needle``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log(name):
                return
            if self.running[name].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not log {needle!r}:\n{self.log(name)[-4000:]}")

    def stop(self, *names: str) -> None:
        """SIGTERM the named processes (all when none named), then SIGKILL what outlives 20 s."""
        chosen = [name for name in (names or list(self.running)) if name in self.running]
        for name in chosen:
            if self.running[name].poll() is None:
                _signal_group(self.running[name], signal.SIGTERM)
        for name in chosen:
            process = self.running.pop(name)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
