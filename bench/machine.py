"""Facts about the machine and the software a benchmark run measured."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import create_engine, text

from .context import Bench

PACKAGES = ("sla-guard", "flask", "gunicorn", "sqlalchemy", "psycopg", "rq", "redis", "pydantic")


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_facts(bench: Bench) -> dict[str, str]:
    """What the numbers depend on: CPU, memory, versions of the runtime and the servers."""
    facts = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory": _first_line("/proc/meminfo", "MemTotal") or "unknown",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }
    engine = create_engine(bench.pg_admin_url)
    try:
        with engine.connect() as connection:
            facts["PostgreSQL"] = connection.execute(text("SHOW server_version")).scalar()
            settings = {
                name: connection.execute(text(f"SHOW {name}")).scalar()
                for name in ("synchronous_commit", "fsync", "shared_buffers")
            }
            facts["PostgreSQL settings"] = ", ".join(f"{key}={value}" for key, value in settings.items())
    finally:
        engine.dispose()
    redis = bench.redis()
    try:
        facts["Redis"] = redis.info("server")["redis_version"]
    finally:
        redis.close()
    versions = []
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{package} {version(package)}")
    facts["packages"] = ", ".join(versions)
    facts["sla-guard tree"] = _git_state(bench)
    return facts


def _git_state(bench: Bench) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=bench.repo, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "sla_guard", "workers"))
    if not commit:
        return "no commit yet (working tree)"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")
