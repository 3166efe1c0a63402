"""Faults the end-to-end tests inject: a TCP proxy to PostgreSQL they may cut, and a hook that
answers slowly (a private Redis to kill is :class:`sla_guard.redis_server.RedisServer`). The shared
Redis and PostgreSQL are never stopped."""

from __future__ import annotations

import json
import socket
import threading
import time


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a server. ``cut()`` drops every connection and closes each
    new one at once (the server is unreachable); ``restore()`` forwards again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._open = True
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._open = False
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self.cut()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                is_open = self._open
            if not is_open:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class SlowSink:
    """The managers' hook, answering the first ``slow`` alerts only after ``delay_s`` seconds
    (time for a test to kill the worker mid-delivery); records every alert it receives."""

    def __init__(self, slow: int, delay_s: float):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.received: list[dict] = []
        self.started = threading.Event()
        self._slow = slow

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append(json.loads(body))
                sink.started.set()
                if len(sink.received) <= sink._slow:
                    time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
