"""gunicorn, started from ``sla-guard serve`` with sla-guard's settings."""

from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication


def _child_exit(server, worker) -> None:
    """Drop a dead worker's live metrics files (prometheus multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class SlaGuardServer(BaseApplication):
    def __init__(self, options: dict, app_factory):
        self.options = options
        self.app_factory = app_factory
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.app_factory()


WEB_THREADS = 8
"""Request threads per web process (``SLA_GUARD_WEB_THREADS``): concurrent webhooks of one
process share their inbox commits (:mod:`sla_guard.ingest.webhooks`)."""


def gunicorn_options(host: str, port: int, workers: int, threads: int = WEB_THREADS) -> dict:
    """Server settings shared by ``sla-guard serve`` and the ingest benchmark's baseline."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "child_exit": _child_exit,
    }


def run_gunicorn(host: str, port: int, workers: int, threads: int = WEB_THREADS) -> None:
    from sla_guard import create_app

    SlaGuardServer(gunicorn_options(host, port, workers, threads), create_app).run()
