"""``sla-guard dev``: the web app and a worker in one command, for a first look on a laptop."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import click

from sla_guard.redis_server import RedisServer


def _redis_up(url: str) -> bool:
    from redis.exceptions import RedisError

    from sla_guard.runtime import redis_client

    try:
        redis_client(url).ping()
        return True
    except RedisError:
        return False


def _ensure_redis(url: str) -> RedisServer | None:
    """Use the Redis at ``url``, or start a local ``redis-server`` when it is installed."""
    if _redis_up(url):
        return None
    binary = shutil.which("redis-server")
    if binary is None or not url.startswith("redis://127.0.0.1:6379"):
        click.echo(
            f"sla-guard: Redis is not reachable at {url}: install it (`sudo apt-get install redis-server`) "
            "or set REDIS_URL",
            err=True,
        )
        sys.exit(2)
    click.echo("starting a local redis-server on 127.0.0.1:6379 (nothing kept on disk)")
    try:
        return RedisServer(port=6379, binary=binary).start(timeout_s=5.0)
    except RuntimeError:
        click.echo("sla-guard: redis-server did not start", err=True)
        sys.exit(2)


def limits(database_url: str) -> str:
    """What this one-command setup is for, and what it is not."""
    where = "SQLite" if database_url.startswith("sqlite") else "your database"
    lines = [
        f"limits: one web process (2 workers) and one worker on {where}; made for trying sla-guard out.",
    ]
    if database_url.startswith("sqlite"):
        lines.append(
            "  SQLite runs in WAL mode with one writer at a time: webhooks are committed in groups, but every"
            " write (webhooks, the worker applying them, timers) waits its turn for the one lock, so bursts"
            " slow alerts down. bench/RESULTS.md has the figures measured for this setup."
        )
    lines.append(
        "  For production use PostgreSQL (DATABASE_URL=postgresql://...), and run `sla-guard serve` and one or"
        " more `sla-guard worker` processes on their own."
    )
    return "\n".join(lines)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:  # the child and everything it started are gone
        pass


def run_dev(host: str, port: int, demo: bool = False) -> None:
    env = dict(os.environ)
    for key in ("SLA_GUARD_WEBHOOK_SECRET", "SLA_GUARD_API_TOKEN"):
        if not env.get(key):
            env[key] = secrets.token_urlsafe(24)
            click.echo(f"{key}={env[key]}  (generated for this run; export your own to keep it)")
    os.environ.update(env)
    from sla_guard.preflight import rules_or_fail, settings_or_fail
    from sla_guard.store.migrate import upgrade

    settings = settings_or_fail()
    rules_or_fail(settings.rules_path)
    redis_server = _ensure_redis(settings.redis_url)
    upgrade(settings.database_url)
    if demo:
        from sla_guard.insight_cli import seed_demo

        seed_demo()
    command = [sys.executable, "-m", "sla_guard.cli"]
    # each in a session of its own, so that stopping it stops everything it started too
    children = [
        subprocess.Popen(command + ["worker"], env=env, start_new_session=True),
        subprocess.Popen(
            command + ["serve", "--host", host, "--port", str(port), "--workers", "2"], env=env, start_new_session=True
        ),
    ]
    click.echo(f"sla-guard is running on http://{host}:{port} (Ctrl-C stops it)")
    click.echo(limits(settings.database_url))

    def stop(*_):
        for child in children:
            if child.poll() is None:
                _signal_group(child, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(child, signal.SIGKILL)  # whatever is left of it (a worker's scheduler too)
            child.wait(timeout=15)
        if redis_server is not None:
            redis_server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        for name, child in zip(("worker", "web"), children, strict=True):
            if child.poll() is not None:
                click.echo(f"sla-guard: the {name} process stopped (exit code {child.returncode}); stopping", err=True)
    except KeyboardInterrupt:
        pass
    stop()
