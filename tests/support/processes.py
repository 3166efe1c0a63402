"""Real processes on 127.0.0.1 for end-to-end tests: the sla-guard processes (`serve` and
`worker`) driven over HTTP as senders and API clients drive them, on a ``redis-server`` of one's
own (:class:`sla_guard.redis_server.RedisServer`).

Waiting is always on a condition with a generous deadline (:func:`wait_for`), never a fixed
sleep: a loaded machine makes a test slower, never red.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from sla_guard.redis_server import free_port
from sla_guard.security import SIGNATURE_HEADER, sign
from sla_guard.timers.reconciler import LOCK_KEY

CLI = [sys.executable, "-m", "sla_guard.cli"]
PATIENCE_S = 60.0
"""How long a condition is waited for unless a test says otherwise: far longer than anything
takes on a quiet machine, so that only a broken promise runs out of it."""


def seconds_rules(first_touch_s: int) -> str:
    """Rules where anna's every lead must be touched within ``first_touch_s`` seconds, or she is
    alerted at the local sink (``SINK_URL``); olga is her manager."""
    return textwrap.dedent(f"""
        timezone: UTC
        channels:
          sink: {{type: webhook, url: "${{SINK_URL}}"}}
        people:
          anna: {{manager: olga, channels: [sink]}}
          olga: {{channels: [sink]}}
        rules:
          - name: every lead
            first_touch:
              within: {first_touch_s}s
              escalate: [{{after: 0s, notify: [owner]}}]
    """)


def lead_created(lead_id: str, at: datetime | None = None, **lead) -> dict:
    """A generic ``lead.created`` event of anna's lead, at ``at`` (default: now)."""
    return {
        "event_id": f"{lead_id}-created",
        "type": "lead.created",
        "occurred_at": (at or datetime.now(UTC)).isoformat(),
        "lead": {"id": lead_id, "owner": "anna", **lead},
    }


def wait_for(predicate, timeout_s: float = PATIENCE_S, interval_s: float = 0.1):
    """Poll ``predicate`` until it gives a true value (returned) or ``timeout_s`` is over (then
    its last value is returned, false)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


def post_signed_over_http(base_url: str, secret: str, payload, path: str = "/webhooks/generic") -> requests.Response:
    """POST the payload to a running sla-guard's generic webhook, signed now with ``secret``."""
    body = json.dumps(payload).encode()
    return requests.post(
        base_url + path,
        data=body,
        timeout=30,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(time.time()))},
    )


class ReconcilerPasses:
    """Counts the reconciler passes the workers of one queue complete, as their Redis sees them:
    each pass ends by deleting its lock key (watched with ``MONITOR``; survives Redis restarts)."""

    def __init__(self, redis_url: str, queue: str):
        self.redis_url = redis_url
        self.lock_key = LOCK_KEY.format(queue=queue)
        self.count = 0
        self._stop = threading.Event()
        self._monitor = None
        threading.Thread(target=self._watch, name="reconciler-passes", daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                with Redis.from_url(self.redis_url).monitor() as monitor:
                    self._monitor = monitor
                    for command in monitor.listen():
                        if command["command"].upper().startswith("DEL ") and self.lock_key in command["command"]:
                            self.count += 1
            except (RedisError, OSError, ValueError, AttributeError):  # Redis away, or closed by close()
                self._stop.wait(0.1)

    def wait(self, passes: int, timeout_s: float = PATIENCE_S) -> bool:
        """Wait until ``passes`` whole passes have run after this call (one more end is awaited:
        the first end seen may be of a pass that had begun before)."""
        target = self.count + passes + 1
        return bool(wait_for(lambda: self.count >= target, timeout_s))

    def close(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            try:
                self._monitor.connection.disconnect()
            except (RedisError, OSError):
                pass


class Stack:
    """Starts, kills and restarts sla-guard processes with one environment; logs go to files.
    ``post`` and ``api`` are a signed sender's and an API client's requests to its web process."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.web: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._logs: list = []
        self._passes: ReconcilerPasses | None = None

    @property
    def worker(self) -> subprocess.Popen | None:
        """The worker started last."""
        return self.workers[-1] if self.workers else None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}-{len(self._logs)}.log", "wb")
        self._logs.append(log)
        return subprocess.Popen(CLI + args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def upgrade(self) -> None:
        subprocess.run(CLI + ["db", "upgrade"], env=self.env, check=True, capture_output=True, timeout=300)

    def start_web(self) -> None:
        self.web = self._spawn("web", ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"])

        def ready() -> bool:
            try:
                return requests.get(self.base_url + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:  # not up yet, or too busy starting to answer in time
                return self.web.poll() is not None  # exited: stop waiting, fail below

        if not wait_for(ready, 3 * PATIENCE_S) or self.web.poll() is not None:
            raise RuntimeError(f"sla-guard serve did not become ready:\n{self.logs('web')}")

    def start_worker(self) -> None:
        """Start a worker and wait until it says it started (in its own log: a worker killed
        before it said so too)."""
        own_log = self.log_dir / f"worker-{len(self._logs)}.log"
        worker = self._spawn("worker", ["worker"])
        self.workers.append(worker)

        def started() -> bool:
            return "worker started" in own_log.read_text(errors="replace") or worker.poll() is not None

        if not wait_for(started, 3 * PATIENCE_S) or worker.poll() is not None:
            raise RuntimeError(f"sla-guard worker did not start:\n{self.logs('worker')}")

    def kill_worker(self) -> None:
        """``kill -9`` of the worker started last and everything it started."""
        worker = self.workers.pop()
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def post(self, payload, path: str = "/webhooks/generic") -> requests.Response:
        """POST the payload to the generic webhook, signed now with the stack's secret."""
        return post_signed_over_http(self.base_url, self.env["SLA_GUARD_WEBHOOK_SECRET"], payload, path)

    def api(self, path: str) -> requests.Response:
        """GET an API path with the stack's token."""
        headers = {"Authorization": f"Bearer {self.env['SLA_GUARD_API_TOKEN']}"}
        return requests.get(self.base_url + path, headers=headers, timeout=30)

    def lead(self, lead_id: str) -> dict | None:
        """The lead as ``GET /api/leads/<id>`` shows it, or None while it is not there (yet)."""
        response = self.api(f"/api/leads/{lead_id}")
        return response.json() if response.status_code == 200 else None

    def idle(self) -> bool:
        """No job of this stack's queues is waiting or running in Redis."""
        queue_name = self.env["SLA_GUARD_QUEUE"]
        redis = Redis.from_url(self.env["REDIS_URL"])
        try:
            queues = [queue for queue in Queue.all(connection=redis) if queue_name in queue.name]
            return all(queue.count == 0 and queue.started_job_registry.count == 0 for queue in queues)
        except RedisError:
            return False
        finally:
            redis.close()

    def watch_reconciler(self) -> ReconcilerPasses:
        """Start counting the reconciler's passes (at most once per stack)."""
        if self._passes is None:
            self._passes = ReconcilerPasses(self.env["REDIS_URL"], self.env["SLA_GUARD_QUEUE"])
        return self._passes

    def quiet_after(self, passes: int = 2, timeout_s: float = PATIENCE_S) -> bool:
        """Let the reconciler run ``passes`` more whole passes (each re-arms and resends whatever
        the database says is owed), then wait until nothing is queued or running. Once the
        database says nothing is owed, this is the chance a duplicate would take to show: a
        negative cannot be waited for otherwise. False if the worker stopped or never got there."""
        watch = self.watch_reconciler()
        done = watch.wait(passes, timeout_s) and wait_for(self.idle, timeout_s)
        return bool(done) and self.worker is not None and self.worker.poll() is None

    def logs(self, name: str) -> str:
        out = []
        for path in sorted(self.log_dir.glob(f"{name}-*.log")):
            out.append(path.read_text(errors="replace"))
        return "\n".join(out)

    def stop(self) -> None:
        processes = [process for process in (self.web, *self.workers) if process is not None]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for log in self._logs:
            log.close()
        if self._passes is not None:
            self._passes.close()
