"""The alert receiver: a threaded HTTP server standing in for a managers' chat hook.

It records, for every POST, the wall-clock time it arrived (``time.time()`` as soon as the
request line and headers are read) and the alert's ``lead_id``, ``kind``, ``level``, ``due_at``
and ``fired_at``, then answers 200 at once. It speaks HTTP/1.1 keep-alive, as a real hook would,
so a worker's delivery session reuses its connection.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import time


@dataclass(frozen=True)
class Receipt:
    received: float
    alert_id: str | None
    lead_id: str | None
    kind: str | None
    level: int | None
    due_at: float | None
    fired_at: float | None


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the answer must not wait for the sender's delayed ACK
    server: AlertReceiver

    def do_POST(self):  # noqa: N802 (http.server's name)
        received = time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        try:
            alert = json.loads(body)
        except ValueError:
            alert = {}
        self.server.receipts.append(
            Receipt(
                received=received,
                alert_id=self.headers.get("X-SLA-Guard-Alert-Id"),
                lead_id=alert.get("lead_id"),
                kind=alert.get("kind"),
                level=alert.get("level"),
                due_at=_epoch(alert.get("due_at")),
                fired_at=_epoch(alert.get("fired_at")),
            )
        )

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        """Silent: one log line per alert would cost more than the answer."""


class AlertReceiver(ThreadingHTTPServer):
    """Listens on 127.0.0.1 on a free port; ``receipts`` grows as alerts arrive."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receipts: list[Receipt] = []
        self._thread = threading.Thread(target=self.serve_forever, name="alert-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
