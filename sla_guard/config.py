"""Settings: defaults, then the environment, then a test's overrides; checked once, before anything starts.

:func:`load_settings` returns a :class:`Settings`: a frozen, typed object read by attribute
(``settings.redis_url``), never by string key. Each field is set by the environment variable
named in its metadata (the names of the contract: ``DATABASE_URL``, ``SLA_GUARD_QUEUE``, …).
A bad value raises :class:`ConfigError` naming that variable. The CRMs' own settings
(``SLA_GUARD_AMOCRM_*`` and so on) are an open set the adapters and CRM clients define; they
are kept as given and read per CRM with :meth:`Settings.crm`.

Flask's ``app.config`` carries the object under one key, :data:`APP_CONFIG_KEY`
(:func:`of_app` reads it). Nothing here runs at import time.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sla_guard.exceptions import ConfigError

APP_CONFIG_KEY = "SLA_GUARD_SETTINGS"
"""The key of Flask's ``app.config`` that holds the app's :class:`Settings`."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclass(frozen=True)
class Settings:
    """Every setting of sla-guard, typed and validated when the object is made."""

    database_url: str = field(default="sqlite:///sla_guard.db", metadata=_env("DATABASE_URL"))
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata=_env("REDIS_URL"))
    rules_path: str = field(default="config/sla.yaml", metadata=_env("SLA_GUARD_RULES"))
    webhook_secret: str | None = field(default=None, metadata=_env("SLA_GUARD_WEBHOOK_SECRET"))
    api_token: str | None = field(default=None, metadata=_env("SLA_GUARD_API_TOKEN"))
    queue: str = field(default="sla-guard", metadata=_env("SLA_GUARD_QUEUE"))
    max_body_bytes: int = field(default=1_048_576, metadata=_env("SLA_GUARD_MAX_BODY_BYTES"))
    signature_max_age_s: int = field(default=300, metadata=_env("SLA_GUARD_SIGNATURE_MAX_AGE_S"))
    reconcile_interval_s: float = field(default=10.0, metadata=_env("SLA_GUARD_RECONCILE_INTERVAL_S"))
    arm_horizon_s: int = field(default=900, metadata=_env("SLA_GUARD_ARM_HORIZON_S"))
    timer_poll_s: float = field(default=0.05, metadata=_env("SLA_GUARD_TIMER_POLL_S"))
    scheduler_interval_s: float = field(default=0.2, metadata=_env("SLA_GUARD_SCHEDULER_INTERVAL_S"))
    alert_max_attempts: int = field(default=8, metadata=_env("SLA_GUARD_ALERT_MAX_ATTEMPTS"))
    log_level: str = field(default="INFO", metadata=_env("SLA_GUARD_LOG_LEVEL"))
    web_workers: int = field(default=2, metadata=_env("SLA_GUARD_WEB_WORKERS"))
    web_threads: int = field(default=8, metadata=_env("SLA_GUARD_WEB_THREADS"))
    ack_secret: str | None = field(default=None, metadata=_env("SLA_GUARD_ACK_SECRET"))
    public_url: str | None = field(default=None, metadata=_env("SLA_GUARD_PUBLIC_URL"))
    ack_ttl_s: int = field(default=86400, metadata=_env("SLA_GUARD_ACK_TTL_S"))
    telegram_webhook_secret: str | None = field(default=None, metadata=_env("SLA_GUARD_TELEGRAM_WEBHOOK_SECRET"))
    slack_signing_secret: str | None = field(default=None, metadata=_env("SLA_GUARD_SLACK_SIGNING_SECRET"))
    secret_key: str | None = field(default=None, metadata=_env("SLA_GUARD_SECRET_KEY"))
    """Signs the dashboard's session cookies (else a key derived from the API token)."""
    crm_values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Every other ``SLA_GUARD_*`` setting by its full name: the CRMs' settings; see :meth:`crm`."""

    def __post_init__(self) -> None:
        for name, value in _validated(self).items():
            object.__setattr__(self, name, value)

    def crm(self, name: str) -> dict[str, Any]:
        """The settings of one CRM (``SLA_GUARD_AMOCRM_*`` for ``"amocrm"``) that are set, by full name."""
        return crm_settings(self, name)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated again (tests use it to override a value)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        return f"Settings(database={_hide_password(self.database_url)}, redis={self.redis_url}, queue={self.queue})"


ENV_NAMES: dict[str, str] = {f.metadata["env"]: f.name for f in dataclasses.fields(Settings) if "env" in f.metadata}
"""Environment variable → field of :class:`Settings`."""

DEFAULTS: dict[str, Any] = {env: Settings.__dataclass_fields__[name].default for env, name in ENV_NAMES.items()}
"""Every setting's environment variable with its default."""


def load_settings(env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Merge defaults → environment → ``overrides`` (keyed by environment names) and validate the result."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    for source in (env, overrides or {}):
        for key, value in source.items():
            if key in ENV_NAMES or key.startswith("SLA_GUARD_"):
                merged[key] = value
    values: dict[str, Any] = {}
    crm_values: dict[str, Any] = {}
    for key, value in merged.items():
        if key in ENV_NAMES:
            values[ENV_NAMES[key]] = value
        else:
            crm_values[key] = value
    return Settings(**values, crm_values=MappingProxyType(crm_values))


def crm_settings(settings: Settings | Mapping[str, Any], crm: str) -> dict[str, Any]:
    """The settings of one CRM that are set, from :class:`Settings` or from a mapping keyed by full
    names (``{"SLA_GUARD_AMOCRM_TOKEN": …}``, as tests and the CRM clients' callers hold them)."""
    values = settings.crm_values if isinstance(settings, Settings) else settings
    prefix = f"SLA_GUARD_{crm.upper()}_"
    return {key: value for key, value in values.items() if key.startswith(prefix) and value}


def of_app(app) -> Settings:
    """The settings of a Flask app made by :func:`sla_guard.create_app`."""
    return app.config[APP_CONFIG_KEY]


# --- validation ---------------------------------------------------------------------------


def _env_name(name: str) -> str:
    return Settings.__dataclass_fields__[name].metadata["env"]


def _number(settings: Settings, name: str, kind: type[int] | type[float], what: str) -> Any:
    value = getattr(settings, name)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{_env_name(name)}={value!r} is not {what}") from None


def _whole(settings: Settings, name: str) -> int:
    number = _number(settings, name, int, "a whole number")
    if number <= 0:
        raise ConfigError(f"{_env_name(name)} must be greater than 0")
    return number


def _seconds(settings: Settings, name: str) -> float:
    number = _number(settings, name, float, "a number")
    if not 0 < number <= 30:
        raise ConfigError(f"{_env_name(name)} must be between 0 and 30 seconds")
    return number


def _optional_text(value: Any) -> str | None:
    return None if value is None or str(value) == "" else str(value)


def _validated(settings: Settings) -> dict[str, Any]:
    """The normalised value of every field; raises :class:`ConfigError` naming the first bad one."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.type == "int":
            values[f.name] = _whole(settings, f.name)
        elif f.type == "float":
            values[f.name] = _seconds(settings, f.name)
    values["database_url"] = _database_url(str(settings.database_url))
    values["redis_url"] = str(settings.redis_url)
    if not values["redis_url"].startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    values["rules_path"] = str(settings.rules_path)
    values["queue"] = str(settings.queue)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", values["queue"]):
        raise ConfigError("SLA_GUARD_QUEUE may hold only letters, digits, '-' and '_' (it prefixes RQ job ids)")
    values["log_level"] = str(settings.log_level).upper()
    if values["log_level"] not in LOG_LEVELS:
        raise ConfigError(f"SLA_GUARD_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    values["public_url"] = _optional_text(settings.public_url)
    if values["public_url"] and not re.match(r"https?://[^\s/]+", values["public_url"]):
        raise ConfigError(
            "SLA_GUARD_PUBLIC_URL must be the http(s) address people reach sla-guard at, e.g. https://sla.example.com"
        )
    for name in ("webhook_secret", "api_token", "ack_secret", "secret_key"):
        secret = getattr(settings, name)
        values[name] = None if secret is None else str(secret)
        if secret is not None and len(str(secret)) < 16:
            raise ConfigError(f"{_env_name(name)} is too short: use at least 16 random characters")
    values["telegram_webhook_secret"] = _optional_text(settings.telegram_webhook_secret)
    if values["telegram_webhook_secret"] and not re.fullmatch(
        r"[A-Za-z0-9_-]{16,256}", values["telegram_webhook_secret"]
    ):
        raise ConfigError(
            "SLA_GUARD_TELEGRAM_WEBHOOK_SECRET must be 16 to 256 letters, digits, '_' or '-' (Telegram's secret_token)"
        )
    values["slack_signing_secret"] = _optional_text(settings.slack_signing_secret)
    values["crm_values"] = MappingProxyType(dict(settings.crm_values))
    return values


def _database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL (e.g. sqlite:///sla_guard.db or postgresql+psycopg://user@host/db)"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError("DATABASE_URL must point to SQLite or PostgreSQL")
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return value


def _hide_password(value: str) -> str:
    try:
        return make_url(value).render_as_string(hide_password=True)
    except ArgumentError:
        return "?"
