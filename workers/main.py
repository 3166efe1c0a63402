"""``sla-guard worker``: an RQ worker with the scheduler, the pump that applies new events,
and the periodic reconciler."""

from __future__ import annotations

import logging
import signal
import threading

from rq import Queue, SimpleWorker

from sla_guard import runtime as runtime_module
from sla_guard.pending import pump
from sla_guard.reconciler import reconcile_once
from sla_guard.runtime import Runtime

log = logging.getLogger("sla_guard.worker")

MAINTENANCE_INTERVAL_S = 15
"""How often an idle worker cleans registries and retries taking the scheduler lock (RQ: 600 s)."""


def reconciler_loop(runtime: Runtime, stop: threading.Event) -> None:
    """Run the reconciler every ``SLA_GUARD_RECONCILE_INTERVAL_S`` until ``stop`` is set."""
    interval = runtime.settings["SLA_GUARD_RECONCILE_INTERVAL_S"]
    lock_ms = int(max(interval * 3, 5) * 1000)
    while not stop.is_set():
        try:
            reconcile_once(runtime, lock_ms)
        except Exception:  # the loop must outlive any one bad pass
            log.exception("reconciler pass failed")
        stop.wait(interval)


def run(runtime: Runtime, burst: bool = False) -> None:
    """Serve jobs until stopped. ``SimpleWorker`` runs jobs in-process (a fork per job costs
    several times more CPU than the jobs themselves); jobs are short and idempotent."""
    runtime_module.install(runtime)
    runtime.record_rules()
    signal.signal(signal.SIGHUP, runtime.rules.request_reload)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler_loop, args=(runtime, stop), name="sla-guard-reconciler", daemon=True)
    thread.start()
    pump_thread = threading.Thread(target=pump, args=(runtime, stop), name="sla-guard-pump", daemon=True)
    pump_thread.start()
    queue = Queue(runtime.queue_name, connection=runtime.redis)
    worker = SimpleWorker([queue], connection=runtime.redis, maintenance_interval=MAINTENANCE_INTERVAL_S)
    log.info("worker started", extra={"queue": runtime.queue_name, "rules_version": runtime.rules.current().version})
    try:
        worker.work(with_scheduler=True, burst=burst, logging_level=runtime.settings["SLA_GUARD_LOG_LEVEL"])
    finally:
        stop.set()
        thread.join(timeout=5)
        pump_thread.join(timeout=5)
