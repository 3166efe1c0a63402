"""Settings: defaults, then the environment, then a test dict; checked before anything starts.

Nothing here runs at import time. :func:`load_settings` returns a plain dict, the same shape
Flask's ``app.config`` holds, and raises :class:`ConfigError` naming the first bad setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sla_guard.exceptions import ConfigError

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": "sqlite:///sla_guard.db",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SLA_GUARD_RULES": "config/sla.yaml",
    "SLA_GUARD_WEBHOOK_SECRET": None,
    "SLA_GUARD_API_TOKEN": None,
    "SLA_GUARD_QUEUE": "sla-guard",
    "SLA_GUARD_MAX_BODY_BYTES": 1_048_576,
    "SLA_GUARD_SIGNATURE_MAX_AGE_S": 300,
    "SLA_GUARD_RECONCILE_INTERVAL_S": 10.0,
    "SLA_GUARD_ARM_HORIZON_S": 900,
    "SLA_GUARD_TIMER_SHARDS": 4,
    "SLA_GUARD_SCHEDULER_INTERVAL_S": 0.2,
    "SLA_GUARD_ALERT_MAX_ATTEMPTS": 8,
    "SLA_GUARD_LOG_LEVEL": "INFO",
    "SLA_GUARD_WEB_WORKERS": 4,
    "SLA_GUARD_ACK_SECRET": None,
    "SLA_GUARD_PUBLIC_URL": None,
    "SLA_GUARD_ACK_TTL_S": 86400,
    "SLA_GUARD_SECRET_KEY": None,
}
"""Every setting with its default; each can be overridden by an environment variable of the same name."""

_INTEGERS = (
    "SLA_GUARD_MAX_BODY_BYTES",
    "SLA_GUARD_SIGNATURE_MAX_AGE_S",
    "SLA_GUARD_ARM_HORIZON_S",
    "SLA_GUARD_TIMER_SHARDS",
    "SLA_GUARD_ALERT_MAX_ATTEMPTS",
    "SLA_GUARD_WEB_WORKERS",
    "SLA_GUARD_ACK_TTL_S",
)
_FLOATS = ("SLA_GUARD_RECONCILE_INTERVAL_S", "SLA_GUARD_SCHEDULER_INTERVAL_S")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def load_settings(env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge defaults → environment → ``overrides`` and validate the result."""
    env = os.environ if env is None else env
    settings = dict(DEFAULTS)
    for key, value in env.items():
        if key in DEFAULTS or key.startswith("SLA_GUARD_"):
            settings[key] = value
    settings.update(overrides or {})
    return validate(settings)


def validate(settings: dict[str, Any]) -> dict[str, Any]:
    for key in _INTEGERS:
        try:
            settings[key] = int(settings[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={settings[key]!r} is not a whole number") from None
        if settings[key] <= 0:
            raise ConfigError(f"{key} must be greater than 0")
    for key in _FLOATS:
        try:
            settings[key] = float(settings[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={settings[key]!r} is not a number") from None
        if not 0 < settings[key] <= 30:
            raise ConfigError(f"{key} must be between 0 and 30 seconds")
    try:
        url = make_url(str(settings["DATABASE_URL"]))
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL (e.g. sqlite:///sla_guard.db or postgresql+psycopg://user@host/db)"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError("DATABASE_URL must point to SQLite or PostgreSQL")
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        settings["DATABASE_URL"] = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if not str(settings["REDIS_URL"]).startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(settings["SLA_GUARD_QUEUE"])):
        raise ConfigError("SLA_GUARD_QUEUE may hold only letters, digits, '-' and '_' (it prefixes RQ job ids)")
    level = str(settings["SLA_GUARD_LOG_LEVEL"]).upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"SLA_GUARD_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
    settings["SLA_GUARD_LOG_LEVEL"] = level
    public_url = settings.get("SLA_GUARD_PUBLIC_URL")
    if public_url and not re.match(r"https?://[^\s/]+", str(public_url)):
        raise ConfigError(
            "SLA_GUARD_PUBLIC_URL must be the http(s) address people reach sla-guard at, e.g. https://sla.example.com"
        )
    for key in ("SLA_GUARD_WEBHOOK_SECRET", "SLA_GUARD_API_TOKEN", "SLA_GUARD_ACK_SECRET", "SLA_GUARD_SECRET_KEY"):
        if settings.get(key) is not None and len(str(settings[key])) < 16:
            raise ConfigError(f"{key} is too short: use at least 16 random characters")
    return settings


def crm_settings(settings: Mapping[str, Any], crm: str) -> dict[str, str]:
    """The settings of one CRM (``SLA_GUARD_AMOCRM_*`` and so on)."""
    prefix = f"SLA_GUARD_{crm.upper()}_"
    return {key: value for key, value in settings.items() if key.startswith(prefix) and value}
