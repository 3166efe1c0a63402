"""``sla-guard worker``: an RQ worker with the scheduler, the timer loop, the pump that applies
new events, and the periodic reconciler.

The timer loop fires due clocks in a thread of its own, never waiting for an RQ job slot, and
the pumps step aside while timers are due or being fired, so a backlog of events never delays
an alert."""

from __future__ import annotations

import logging
import signal
import threading
import time

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler

from sla_guard import runtime as runtime_module
from sla_guard.ingest.processing import pump
from sla_guard.legacy_jobs import carry_over, old_timer_queue
from sla_guard.outbox.http import install_pacer
from sla_guard.outbox.pacing import crm_pacer
from sla_guard.runtime import Runtime
from sla_guard.timers.firing import timer_loop
from sla_guard.timers.reconciler import reconcile_once

log = logging.getLogger("sla_guard.worker")

PUMP_THREADS = 2
"""Pumps per worker applying new events side by side (applying mostly waits on the database;
leads are locked in sorted order, so two batches never wait on each other in a circle)."""

MAINTENANCE_INTERVAL_S = 15
"""How often an idle worker cleans registries and retries taking the scheduler lock (RQ: 600 s)."""


def reconciler_loop(runtime: Runtime, stop: threading.Event) -> None:
    """Run the reconciler every ``SLA_GUARD_RECONCILE_INTERVAL_S`` until ``stop`` is set."""
    interval = runtime.settings.reconcile_interval_s
    lock_ms = int(max(interval * 3, 5) * 1000)
    while not stop.is_set():
        try:
            reconcile_once(runtime, lock_ms, step_aside=True)
        except Exception:  # the loop must outlive any one bad pass
            log.exception("reconciler pass failed")
        stop.wait(interval)


class SlaGuardScheduler(RQScheduler):
    """RQ's scheduler, looking for due jobs (retries, CRM look-ups) every ``poll_interval``
    seconds (RQ: every second; its lock times stay whole seconds)."""

    poll_interval: float = 0.2

    def work(self):
        # RQ's loop, with the shorter sleep.
        self._install_signal_handlers()
        self.register_birth()
        while True:
            if self._stop_requested:
                self.stop()
                break
            if self.should_reacquire_locks:
                self.acquire_locks()
            self.heartbeat()
            self.enqueue_scheduled_jobs()
            time.sleep(self.poll_interval)


class SlaGuardWorker(SimpleWorker):
    """RQ's in-process worker whose scheduler looks for due jobs every ``scheduler_interval``
    seconds instead of every second (SLA timers do not go through it: see the timer loop)."""

    scheduler_interval: float = 0.2
    stop_signalled: bool = False
    """Set when SIGTERM/SIGINT asked the worker to stop (RQ's own loop also ends when Redis goes away)."""

    def request_stop(self, signum, frame):
        self.stop_signalled = True
        super().request_stop(signum, frame)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ):
        # RQ builds its scheduler here with a fixed 1 s interval; this is the same, with ours.
        self.scheduler = SlaGuardScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.poll_interval = self.scheduler_interval
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()


def _wait_for_redis(runtime: Runtime) -> None:
    while True:
        try:
            runtime.redis.ping()
            return
        except RedisError:
            time.sleep(1.0)


def run(runtime: Runtime, burst: bool = False) -> None:
    """Serve jobs until stopped. ``SimpleWorker`` runs jobs in-process (a fork per job costs
    several times more CPU than the jobs themselves); jobs are short and idempotent."""
    runtime_module.install(runtime)
    install_pacer(crm_pacer(runtime.settings))  # every worker's CRM calls share each account's pace
    runtime.record_rules()
    signal.signal(signal.SIGHUP, runtime.rules.request_reload)
    try:  # before any job is taken: jobs an older version queued by dotted path
        carry_over(runtime, [old_timer_queue(runtime.queue_name), runtime.queue_name])
    except Exception:  # never fatal: an old job that fails meanwhile is carried over at the next start
        log.exception("jobs of an older version not carried over")
    stop = threading.Event()
    thread = threading.Thread(target=reconciler_loop, args=(runtime, stop), name="sla-guard-reconciler", daemon=True)
    thread.start()
    pump_threads = [
        threading.Thread(target=pump, args=(runtime, stop), name=f"sla-guard-pump-{number}", daemon=True)
        for number in range(PUMP_THREADS)
    ]
    for pump_thread in pump_threads:
        pump_thread.start()
    timer_thread = threading.Thread(target=timer_loop, args=(runtime, stop), name="sla-guard-timers", daemon=True)
    timer_thread.start()
    queues = [Queue(runtime.queue_name, connection=runtime.redis)]
    log.info("worker started", extra={"queue": runtime.queue_name, "rules_version": runtime.rules.current().version})
    try:
        while True:
            worker = SlaGuardWorker(queues, connection=runtime.redis, maintenance_interval=MAINTENANCE_INTERVAL_S)
            worker.scheduler_interval = runtime.settings.scheduler_interval_s
            try:
                worker.work(with_scheduler=True, burst=burst, logging_level=runtime.settings.log_level)
            except RedisError:  # RQ's own teardown could not reach Redis either
                pass
            if burst or worker.stop_signalled:
                break
            # RQ's loop ends when Redis goes away: wait for it, then serve again (the pump, timer
            # loop and reconciler threads carry on meanwhile, each waiting for Redis on its own)
            log.warning("worker lost Redis; serving again once it answers")
            _wait_for_redis(runtime)
    except StopRequested:  # stopped while waiting for Redis
        pass
    finally:
        stop.set()
        thread.join(timeout=5)
        for pump_thread in pump_threads:
            pump_thread.join(timeout=5)
        timer_thread.join(timeout=5)
