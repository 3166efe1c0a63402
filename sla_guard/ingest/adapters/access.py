"""Access to a CRM: its settings, and checking a webhook against them.

Every CRM's settings are environment variables named ``SLA_GUARD_<CRM>_<NAME>``
(:func:`setting_names`); a CRM is on when its required ones are set (:func:`configured`). Its
``verify`` refuses a request unless the secrets it carries match ours, compared in constant time
(:func:`secrets_to_verify`, :func:`same_secret`). Nothing here does I/O.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sla_guard.exceptions import ConfigError, InvalidEvent, Unauthorized
from sla_guard.ingest.adapters.base import RawRequest, parse_form, text


def setting_names(crm: str, *names: str) -> tuple[str, ...]:
    """The environment names of a CRM's settings: ``setting_names("amocrm", "TOKEN")`` is
    ``("SLA_GUARD_AMOCRM_TOKEN",)``."""
    return tuple(f"SLA_GUARD_{crm.upper()}_{name}" for name in names)


def configured(settings: Mapping[str, Any], *keys: str) -> bool:
    """Whether every one of the settings ``keys`` holds a value (a CRM's ``enabled``)."""
    return all(text(settings.get(key)) for key in keys)


def field_settings(settings: Mapping[str, Any], **keys: str) -> dict[str, str]:
    """The CRM fields named by settings, by lead field: ``field_settings(settings,
    source="SLA_GUARD_AMOCRM_FIELD_SOURCE")`` is ``{"source": "<its value>"}`` when it is set."""
    return {ours: text(settings.get(key)) for ours, key in keys.items() if text(settings.get(key))}


def word_set(settings: Mapping[str, Any], key: str, default: Iterable[str]) -> frozenset[str]:
    """A comma-separated setting as a set of words; an absent setting gives ``default``."""
    value = settings.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return frozenset(default)
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return frozenset(str(part) for part in value)


def zone(settings: Mapping[str, Any], key: str, default: str) -> ZoneInfo:
    """The IANA time zone held by setting ``key``; a bad name raises :class:`ConfigError`."""
    name = text(settings.get(key)) or default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{key}={name!r} is not an IANA time zone (e.g. Europe/Moscow)") from None


def secrets_to_verify(settings: Mapping[str, Any], crm: str, *keys: str) -> tuple[str, ...]:
    """The values of the settings a ``verify`` checks against; a CRM missing one of them accepts
    nothing (:class:`Unauthorized`: ``<crm> is not configured``)."""
    values = tuple(text(settings.get(key)) for key in keys)
    if not all(values):
        raise Unauthorized(f"{crm} is not configured")
    return values


def same_secret(given: str, expected: str) -> bool:
    """Whether a secret given in a request is ours, compared in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def form_to_verify(raw: RawRequest, refusal: str) -> dict[str, Any]:
    """The form body read by a ``verify``: a body that cannot be read is refused as unauthentic
    with ``refusal``."""
    try:
        return parse_form(raw)
    except InvalidEvent:
        raise Unauthorized(refusal) from None
