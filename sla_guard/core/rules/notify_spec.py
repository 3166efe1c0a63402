"""The rules file's notification parts: channel types, quiet hours, ops alerts, digests. Pure.

Each channel type has a model of its own here; ``channels.<name>`` in the rules file stays one
open mapping (:class:`~sla_guard.core.rules.schema.Channel`), and :func:`channel_problems` checks it
against the model of its ``type`` so errors point at ``channels.<name>.<key>``. Senders parse
the same mapping with :func:`typed_channel`.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TELEGRAM_API_URL = "https://api.telegram.org"
"""Telegram Bot API base; ``api_url`` of a telegram channel overrides it (a local Bot API server, tests)."""

SLACK_API_URL = "https://slack.com/api"
"""Slack Web API base; ``api_url`` of a slack channel overrides it."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names of ``digests.weekly_on``, Monday first (``datetime.weekday()`` order)."""

ADDRESS_KEYS = {"telegram": "telegram", "slack": "slack", "email": "email"}
"""Channel type -> the person key holding that person's address on it."""


def parse_clock_time(value: Any) -> time:
    """``"09:00"`` -> ``time(9, 0)``; raises ValueError naming the expected form."""
    if isinstance(value, time):
        return value
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(value))
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"{value!r} is not a time of day (HH:MM, e.g. 09:00)")
    return time(int(match.group(1)), int(match.group(2)))


def check_zone(value: str | None) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'"{value}" is not an IANA time zone (e.g. Europe/Moscow)') from None
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class QuietHours(_Spec):
    """A person's night: no pings from ``from`` to ``to`` local time (may cross midnight)."""

    start: time = Field(alias="from")
    end: time = Field(alias="to")
    timezone: str | None = None

    _times = field_validator("start", "end", mode="before")(classmethod(lambda cls, v: parse_clock_time(v)))
    _zone = field_validator("timezone")(classmethod(lambda cls, v: check_zone(v)))

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("`from` and `to` must differ")
        return self


class OpsSpec(_Spec):
    """Where sla-guard reports its own trouble (an alert that failed for good): channel names."""

    notify: tuple[str, ...] = ()


class DigestSpec(_Spec):
    """When the daily digest of overdue leads and the weekly SLA summary go out, in local time."""

    daily_at: time | None = None
    weekly_on: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None
    weekly_at: time | None = None
    timezone: str | None = None
    weekly_notify: tuple[str, ...] = ()

    _times = field_validator("daily_at", "weekly_at", mode="before")(
        classmethod(lambda cls, v: None if v is None else parse_clock_time(v))
    )
    _zone = field_validator("timezone")(classmethod(lambda cls, v: check_zone(v)))

    @property
    def weekly_time(self) -> time:
        return self.weekly_at or self.daily_at or time(9, 0)


# --- channel types -----------------------------------------------------------------------------


class _ChannelSpec(_Spec):
    type: str
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    def secrets(self) -> tuple[str, ...]:
        """Values that must never show in logs, stored errors or alert texts."""
        return ()


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/") if value else value


class _SecretUrlChannel(_ChannelSpec):
    """A channel posting to an http(s) ``url`` that is itself the credential (whoever knows it
    may post), so the URL is kept out of logs like a token."""

    url: str
    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))

    def secrets(self) -> tuple[str, ...]:
        return (self.url,)


class WebhookChannel(_SecretUrlChannel):
    """POSTs the alert JSON to ``url``."""

    type: Literal["webhook"]


class LogChannel(_ChannelSpec):
    type: Literal["log"]


class TelegramChannel(_ChannelSpec):
    """Bot API ``sendMessage``: to ``chat``, or to the person's ``telegram`` chat id."""

    type: Literal["telegram"]
    token: str = Field(min_length=1)
    chat: str | int | None = None
    api_url: str = TELEGRAM_API_URL
    _url = field_validator("api_url")(classmethod(lambda cls, v: _http_url(v)))

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)


class SlackChannel(_ChannelSpec):
    """An incoming-webhook ``url``, or a bot ``token`` posting with ``chat.postMessage``."""

    type: Literal["slack"]
    url: str | None = None
    token: str | None = None
    channel: str | None = None
    api_url: str = SLACK_API_URL
    _url = field_validator("url", "api_url")(classmethod(lambda cls, v: _http_url(v)))

    @model_validator(mode="after")
    def _one_mode(self) -> SlackChannel:
        if bool(self.url) == bool(self.token):
            raise ValueError("give either `url` (an incoming webhook) or `token` (a bot token), not both")
        return self

    def secrets(self) -> tuple[str, ...]:
        return tuple(value for value in (self.url, self.token) if value)


class EmailChannel(_ChannelSpec):
    """SMTP with STARTTLS (default, port 587), implicit TLS (``ssl``, port 465) or none (port 25)."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    user: str | None = None
    password: str | None = None
    sender: str = Field(alias="from", min_length=3)
    to: tuple[str, ...] = ()
    ca_file: str | None = None
    timeout_s: float = Field(default=15.0, gt=0, le=120)

    @field_validator("to", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]

    def secrets(self) -> tuple[str, ...]:
        return tuple(value for value in (self.password,) if value)


class TeamsChannel(_SecretUrlChannel):
    """A Microsoft Teams incoming webhook (Workflows or a legacy connector): posts an Adaptive Card."""

    type: Literal["teams"]


class CrmChannel(_ChannelSpec):
    """A task for the recipient in the CRM (amoCRM/Kommo, Bitrix24, HubSpot, Pipedrive), due ``due_in`` after the alert.

    The CRM's REST settings (``SLA_GUARD_<CRM>_*``) give the address and credentials; ``kind``
    says whether sla-guard's lead ids are the CRM's leads or deals (by default: leads in amoCRM
    and Bitrix24, deals in HubSpot, and in Pipedrive deals for numeric ids, leads for UUIDs).
    """

    type: Literal["crm"]
    crm: Literal["amocrm", "bitrix24", "hubspot", "pipedrive"]
    kind: Literal["lead", "deal"] | None = None
    due_in: timedelta = timedelta(0)
    timeout_s: float = Field(default=20.0, gt=0, le=120)

    @field_validator("due_in", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        from sla_guard.core.rules.durations import parse_duration

        return parse_duration(value) if isinstance(value, str) else value


CHANNEL_MODELS: dict[str, type[_ChannelSpec]] = {
    "webhook": WebhookChannel,
    "log": LogChannel,
    "telegram": TelegramChannel,
    "slack": SlackChannel,
    "email": EmailChannel,
    "teams": TeamsChannel,
    "crm": CrmChannel,
}
"""Every channel type sla-guard can deliver to, with its model."""


def _raw(channel: Any) -> dict:
    if isinstance(channel, dict):
        return channel
    data = {key: value for key, value in channel.model_dump(exclude_unset=True).items() if value is not None}
    return {**data, **(channel.model_extra or {})}


def typed_channel(channel: Any) -> _ChannelSpec:
    """The channel's mapping parsed by the model of its type (raises ValidationError or KeyError)."""
    raw = _raw(channel)
    return CHANNEL_MODELS[raw["type"]].model_validate(raw)


def channel_problems(name: str, channel: Any) -> list[tuple[str, str]]:
    """Errors of ``channels.<name>`` against the model of its type, each with its path."""
    raw = _raw(channel)
    model = CHANNEL_MODELS.get(raw.get("type"))
    if model is None:
        return [
            (
                f"channels.{name}.type",
                f'"{raw.get("type")}" is not a supported channel type ({", ".join(CHANNEL_MODELS)})',
            )
        ]
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        out = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key for a channel of type {raw['type']}"
            elif error["type"] == "missing":
                article = "an" if raw["type"][0] in "aeiou" else "a"
                message = f"{article} {raw['type']} channel needs a {where}"
            out.append((f"channels.{name}" + (f".{where}" if where else ""), message))
        return out
    return []


def needs_address(channel: _ChannelSpec) -> str | None:
    """The person key a channel reads its destination from, or None when the channel names its own."""
    if isinstance(channel, TelegramChannel) and channel.chat is None:
        return "telegram"
    if isinstance(channel, SlackChannel) and channel.token and not channel.channel:
        return "slack"
    if isinstance(channel, EmailChannel) and not channel.to:
        return "email"
    return None
