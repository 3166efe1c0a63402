"""`sla-guard dev`: the web app and a worker from one command, with generated secrets printed;
a lead sent to it gets its clock, and Ctrl-C (SIGTERM) stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from sla_guard.redis_server import free_port
from tests.support.processes import PATIENCE_S, post_signed_over_http, wait_for

pytestmark = pytest.mark.e2e


def test_dev_runs_web_and_worker_with_generated_secrets(tmp_path, rules_path, redis_url, queue_name):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SLA_GUARD_WEBHOOK_SECRET", "SLA_GUARD_API_TOKEN")
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
            "REDIS_URL": redis_url,
            "SLA_GUARD_RULES": str(rules_path),
            "SLA_GUARD_QUEUE": queue_name,
        }
    )
    output = tmp_path / "dev.log"
    with open(output, "wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "sla_guard.cli", "dev", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return requests.get(base + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        assert wait_for(ready, 3 * PATIENCE_S), output.read_text()
        printed = output.read_text()
        secret = re.search(r"^SLA_GUARD_WEBHOOK_SECRET=(\S+)", printed, re.M).group(1)
        token = re.search(r"^SLA_GUARD_API_TOKEN=(\S+)", printed, re.M).group(1)
        assert f"sla-guard is running on http://127.0.0.1:{port}" in printed

        at = datetime.now(UTC).replace(microsecond=0)
        event = {
            "event_id": "dev-1",
            "type": "lead.created",
            "occurred_at": at.isoformat(),
            "lead": {"id": "L-dev", "source": "website", "owner": "anna"},
        }
        answer = post_signed_over_http(base, secret, event)
        assert answer.status_code == 202, answer.text

        def clock_due():
            lead = requests.get(base + "/api/leads/L-dev", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            clocks = lead.json().get("clocks") if lead.status_code == 200 else None
            return clocks[0]["due_at"] if clocks else None

        due = wait_for(clock_due)  # the worker applied the event
        assert due == (at + timedelta(hours=2)).isoformat().replace("+00:00", "Z"), output.read_text()
        started = descendants(dev.pid)
        assert len(started) >= 3, started  # the worker, the web server and its workers (and the scheduler)
    finally:
        if dev.poll() is None:
            os.kill(dev.pid, signal.SIGTERM)  # to `sla-guard dev` alone: it must stop its children
        try:
            dev.wait(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            raise
    assert dev.returncode == 0
    assert wait_for(lambda: not any(alive(pid) for pid in started)), (
        f"these processes outlived `sla-guard dev`: {[command(pid) for pid in started if alive(pid)]}"
    )


def descendants(pid: int) -> list[int]:
    """Every process ``pid`` started, and the processes they started, down the tree."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def alive(pid: int) -> bool:
    """The process runs (a zombie waiting to be reaped has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
