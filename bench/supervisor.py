"""Restarts ``sla-guard worker`` processes that exit, as ``restart: unless-stopped`` does in the
shipped ``docker-compose.yml``, and records every exit so the report can show it.

Without it, a worker that stops on its own during the benchmark would silently turn the
lateness numbers into a measurement of fewer workers (or of none).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .services import Processes

CHECK_EVERY_S = 0.5
"""How often the supervisor looks at its processes."""


@dataclass(frozen=True)
class Exit:
    name: str
    at: float
    code: int


class Supervisor:
    """Watches the named processes from a thread between ``start()`` and ``stop()``."""

    def __init__(self, processes: Processes, names: list[str]):
        self.processes = processes
        self.names = names
        self.exits: list[Exit] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            for name in self.names:
                code = self.processes.exit_code(name)
                if code is not None and not self._stop.is_set():
                    self.exits.append(Exit(name, time.time(), code))
                    self.processes.restart(name)
