"""Everything a worker job needs, built once per process and passed explicitly.

The worker entry point builds a :class:`Runtime` and makes it current for the jobs it runs
(:func:`current`), the way Flask's app context serves views; tests build their own.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from sla_guard.config import Settings
from sla_guard.core.rules.loading import load_rules_file
from sla_guard.core.rules.schema import RuleSet
from sla_guard.exceptions import RulesError
from sla_guard.store.db import Database
from sla_guard.store.rule_versions import record_rule_version

TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, RedisError, ConnectionError, TimeoutError)
"""Failures of the services a runtime connects to (the database, Redis), not of the lead or the
clock being worked on: that work is tried again later, never set aside."""

log = logging.getLogger("sla_guard.runtime")


def utcnow() -> datetime:
    return datetime.now(UTC)


class RulesHolder:
    """The rules in force, reloaded when the file changes (checked at most once a second).

    A file that turns invalid is refused with a logged error; the last good version stays.
    """

    def __init__(self, path: str, rules: RuleSet | None = None, check_every_s: float = 1.0):
        self.path = path
        self._rules = rules or load_rules_file(path)
        self._mtime = self._stat()
        self._checked = time.monotonic()
        self._check_every_s = check_every_s
        self._reload_requested = False
        self._lock = threading.Lock()

    def _stat(self) -> float | None:
        try:
            return Path(self.path).stat().st_mtime
        except OSError:
            return None

    def current(self) -> RuleSet:
        if self._reload_requested or time.monotonic() - self._checked >= self._check_every_s:
            self.reload(force=self._reload_requested)
        return self._rules

    def request_reload(self, *_signal) -> None:
        """Reload at the next use, changed or not (the SIGHUP handler)."""
        self._reload_requested = True

    def try_load(self) -> tuple[RuleSet | None, list[tuple[str, str]]]:
        """Load the file now: ``(rules, [])`` when it took effect, ``(None, errors)`` when refused."""
        try:
            load_rules_file(self.path)
        except RulesError as exc:
            return None, exc.errors
        self.reload(force=True)
        return self._rules, []

    def reload(self, force: bool = False) -> bool:
        """Load the file again if it changed; True when a new version took effect."""
        with self._lock:
            self._checked = time.monotonic()
            self._reload_requested = False
            mtime = self._stat()
            if not force and mtime == self._mtime:
                return False
            self._mtime = mtime
            try:
                rules = load_rules_file(self.path)
            except RulesError as exc:
                log.error(
                    "rules file refused, keeping version %s",
                    self._rules.version,
                    extra={"errors": [f"{p}: {m}" for p, m in exc.errors]},
                )
                return False
            changed = rules.version != self._rules.version
            self._rules = rules
            if changed:
                log.info("rules version %s loaded", rules.version, extra={"rules_version": rules.version})
            return changed


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: Redis
    rules: RulesHolder
    now: Callable[[], datetime] = field(default=utcnow)

    @property
    def queue_name(self) -> str:
        return self.settings.queue

    def http(self) -> requests.Session:
        """The process's HTTP session for channels and CRM calls (its connections are reused)."""
        session = getattr(self, "_http_session", None)
        if session is None:
            session = self._http_session = requests.Session()
        return session

    @classmethod
    def from_settings(cls, settings: Settings, rules: RulesHolder | None = None) -> Runtime:
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            redis=redis_client(settings.redis_url, socket_timeout=None),
            rules=rules or RulesHolder(settings.rules_path),
        )

    def record_rules(self) -> None:
        with self.db.session() as session:
            rules = self.rules.current()
            record_rule_version(session, rules.version, rules.text, self.now())


def redis_client(url: str, socket_timeout: float | None = 5) -> Redis:
    """A Redis client that fails fast when Redis is down, so a webhook is never held up by it.

    Workers pass ``socket_timeout=None``: RQ blocks on the queue for minutes at a time, and a
    shorter socket timeout would make the worker quit while idle.
    """
    return Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=socket_timeout, socket_keepalive=True, health_check_interval=30
    )


_current: contextvars.ContextVar[Runtime] = contextvars.ContextVar("sla_guard_runtime")
_process_runtime: Runtime | None = None


def current() -> Runtime:
    """The runtime of the worker process running this job."""
    runtime = _current.get(None) or _process_runtime
    if runtime is None:
        raise RuntimeError("no sla-guard runtime is active: jobs run inside `sla-guard worker`")
    return runtime


def install(runtime: Runtime) -> None:
    """Make ``runtime`` the one jobs of this process use (the worker calls this once)."""
    global _process_runtime
    _process_runtime = runtime


@contextmanager
def activated(runtime: Runtime) -> Iterator[Runtime]:
    token = _current.set(runtime)
    try:
        yield runtime
    finally:
        _current.reset(token)
