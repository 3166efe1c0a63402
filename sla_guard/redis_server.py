"""A ``redis-server`` of one's own on 127.0.0.1, keeping nothing on disk: what ``sla-guard dev``
starts when no Redis answers, and what the test suite and the soak benchmark run their Redis on."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` on ``port`` (a free one unless given), without persistence: it may be
    killed and started again empty on the same port (what a crash of Redis does to everything
    only Redis held). With a ``folder``, it works and logs (``redis.log``) there."""

    def __init__(self, folder: Path | None = None, port: int | None = None, binary: str = "redis-server"):
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = binary
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> RedisServer:
        """Start it and wait until it answers; :class:`RuntimeError` when it does not in ``timeout_s``."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            command += ["--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + timeout_s
            while self.process.poll() is None:
                try:
                    if client.ping():
                        return self
                except RedisError:
                    pass
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: nothing is saved, nothing is flushed politely."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """SIGTERM, as an operator stops it."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def restart_empty(self) -> None:
        self.kill()
        self.start()
