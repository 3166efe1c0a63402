"""The real sla-guard processes (`serve` and `worker`) on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

CLI = [sys.executable, "-m", "sla_guard.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout_s: float = 60):
    """Poll ``predicate`` until it gives a true value (returned) or ``timeout_s`` is over."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


class Stack:
    """Starts, kills and restarts sla-guard processes with one environment; logs go to files."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._logs: list = []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}-{len(self._logs)}.log", "wb")
        self._logs.append(log)
        return subprocess.Popen(CLI + args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def upgrade(self) -> None:
        subprocess.run(CLI + ["db", "upgrade"], env=self.env, check=True, capture_output=True, timeout=60)

    def start_web(self) -> None:
        self.web = self._spawn("web", ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:  # not up yet, or too busy starting to answer within the second
                pass
            if self.web.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"sla-guard serve did not become ready:\n{self.logs('web')}")

    def start_worker(self) -> None:
        """Start a worker and wait until it says it started (in its own log: a worker killed
        before it said so too)."""
        own_log = self.log_dir / f"worker-{len(self._logs)}.log"
        self.worker = self._spawn("worker", ["worker"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "worker started" in own_log.read_text(errors="replace"):
                return
            if self.worker.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"sla-guard worker did not start:\n{self.logs('worker')}")

    def kill_worker(self) -> None:
        """``kill -9`` of the worker and everything it started (its scheduler too)."""
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def logs(self, name: str) -> str:
        out = []
        for path in sorted(self.log_dir.glob(f"{name}-*.log")):
            out.append(path.read_text(errors="replace"))
        return "\n".join(out)

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (self.web, self.worker):
            if process is not None:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
        for log in self._logs:
            log.close()
