"""Shared types and helpers of the CRM adapters.

An adapter turns one raw webhook request of a CRM into canonical :class:`LeadEvent` objects.
Every adapter module (``amocrm``, ``bitrix24``, ``hubspot``, ``pipedrive``) exposes the same
three pure functions:

- ``verify(raw, settings, now)`` raises :class:`Unauthorized` unless the request is authentic;
- ``parse(raw, settings)`` returns an :class:`AdapterResult` or raises :class:`InvalidEvent`
  naming the offending field; event kinds sla-guard does not use are listed in ``ignored``;
- ``enabled(settings)`` tells whether the CRM's required settings are present.

Nothing here does I/O. Every datetime is timezone-aware and normalised to UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from sla_guard.core.bounds import DEPTH_MAX, check_depth, check_moment, excerpt
from sla_guard.core.events import EVENT_TYPES, LeadEvent
from sla_guard.exceptions import InvalidEvent


@dataclass(frozen=True)
class RawRequest:
    """A webhook request exactly as the web server received it."""

    method: str
    path: str
    """The path as received, e.g. ``/webhooks/hubspot``."""
    url: str
    """The full URL as seen by the server (a setting may override it where a CRM signs its public URL)."""
    headers: Mapping[str, str]
    """Header names in any letter case; read them with :func:`header`."""
    body: bytes
    """The raw body, byte for byte."""
    content_type: str


@dataclass(frozen=True)
class Lookup:
    """A REST read a worker must do before the events of a notification are known (Bitrix24).

    ``method`` is the CRM's REST method (``crm.lead.get``), ``id`` the record to read,
    ``event`` the CRM's event name in upper case and ``ts`` when the CRM sent it.
    """

    method: str
    id: str
    event: str
    ts: datetime

    @property
    def key(self) -> str:
        """A stable identity of this notification, for de-duplicating look-ups."""
        return f"{self.event.lower()}-{self.id}-{int(self.ts.timestamp())}"


@dataclass(frozen=True)
class AdapterResult:
    """What one webhook request means."""

    events: list[LeadEvent]
    """Canonical events, each with a deterministic ``event_id`` (the dedupe key), oldest first."""
    ignored: list[str]
    """Kinds acknowledged but not turned into events (e.g. ``contacts.add``), to count them."""
    lookups: list[Lookup] = field(default_factory=list)
    """REST look-ups a worker must do to learn the events (Bitrix24 only)."""


# --- requests -----------------------------------------------------------------------------


def header(raw: RawRequest, name: str, default: str | None = None) -> str | None:
    """The value of header ``name`` (any letter case), or ``default``."""
    wanted = name.lower()
    for key, value in raw.headers.items():
        if key.lower() == wanted:
            return value
    return default


def _charset(content_type: str) -> str:
    match = re.search(r"charset\s*=\s*\"?([A-Za-z0-9._-]+)", content_type or "")
    return match.group(1).lower() if match else "utf-8"


def body_text(raw: RawRequest) -> str:
    """The body decoded with the charset its ``Content-Type`` declares (UTF-8 by default)."""
    charset = _charset(raw.content_type)
    try:
        return raw.body.decode(charset)
    except LookupError:
        raise InvalidEvent("content_type", f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise InvalidEvent("body", f"not valid {charset} text at byte {exc.start}") from None


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_form(raw: RawRequest) -> dict[str, Any]:
    """Decode an ``x-www-form-urlencoded`` body with PHP-style bracket keys into nested dicts.

    ``leads[status][0][id]=7`` becomes ``{"leads": {"status": {"0": {"id": "7"}}}}``; list
    indexes stay string keys (read them in order with :func:`indexed`). ``+`` is a space and
    percent escapes are decoded with the declared charset. A broken escape or bracket (a body
    cut short) raises :class:`InvalidEvent`.
    """
    text = body_text(raw)
    if not text.strip():
        raise InvalidEvent("body", "the form body is empty")
    if _BAD_PERCENT.search(text):
        raise InvalidEvent("body", "broken percent-encoding (the body may be truncated)")
    charset = _charset(raw.content_type)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding=charset, errors="strict")
    except UnicodeDecodeError:
        raise InvalidEvent("body", f"a percent-encoded value is not valid {charset}") from None
    tree: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            raise InvalidEvent(excerpt(key) or "body", "malformed form key (the body may be truncated)")
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        if len(parts) > DEPTH_MAX:
            raise InvalidEvent("body", f"a form key is nested deeper than {DEPTH_MAX} levels")
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidEvent(excerpt(_join(parts[: depth + 1])), "is both a value and a group")
            node = child
        last = parts[-1] if parts[-1] != "" else str(len(node))
        if isinstance(node.get(last), dict):
            raise InvalidEvent(excerpt(_join(parts)), "is both a value and a group")
        node[last] = value
    return tree


def _join(parts: list[str]) -> str:
    return parts[0] + "".join(f"[{part}]" for part in parts[1:])


def indexed(group: Any) -> list[tuple[str, Any]]:
    """The items of a bracket-key list (``{"0": …, "1": …}``) in index order, as (index, item)."""
    if not isinstance(group, dict):
        return []
    return sorted(
        group.items(), key=lambda item: (not item[0].isdigit(), int(item[0]) if item[0].isdigit() else 0, item[0])
    )


def parse_json(raw: RawRequest) -> Any:
    """Decode a JSON body; a truncated or malformed body raises :class:`InvalidEvent`."""
    text = body_text(raw)
    if not text.strip():
        raise InvalidEvent("body", "the JSON body is empty")
    check_depth(raw.body)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            "body", f"not valid JSON ({exc.msg} at character {exc.pos}); the body may be truncated"
        ) from None


# --- values -------------------------------------------------------------------------------


def text(value: Any) -> str | None:
    """A CRM value as text; ``None``, empty strings and nested objects mean 'not said'."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    result = str(value).strip()
    return result or None


def require(value: Any, where: str) -> str:
    """A required identifier; raises :class:`InvalidEvent` naming ``where`` when it is missing."""
    result = text(value)
    if result is None:
        raise InvalidEvent(where, "is missing")
    return result


def amount(value: Any) -> float | None:
    """A deal amount (``"150000.00"``, ``1000``, ``{"amount": 5}``) as a number, or ``None``."""
    if isinstance(value, dict):
        value = value.get("amount", value.get("value"))
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        return float(str(value).replace(" ", "").replace(",", "."))
    except ValueError:
        return None


def from_unix(value: Any, where: str, *, millis: bool = False) -> datetime:
    """An aware UTC datetime from unix seconds (or milliseconds with ``millis``), not before 2000."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidEvent(where, f"{excerpt(value)!r} is not a unix timestamp") from None
    if millis:
        number /= 1000
    if not 0 < number < 32503680000:  # years 1970..3000
        raise InvalidEvent(where, f"{excerpt(value)!r} is out of range for a timestamp")
    return check_moment(datetime.fromtimestamp(number, tz=UTC), where)


def from_iso(value: Any, where: str, *, tz: ZoneInfo | None = None) -> datetime:
    """An aware UTC datetime from ISO 8601 text; a time without an offset is read in ``tz`` (UTC by default)."""
    raw = text(value)
    if raw is None:
        raise InvalidEvent(where, "is missing")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise InvalidEvent(where, f"{excerpt(raw)!r} is not a date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz or UTC)
    return check_moment(parsed, where)


def outcome_in(value: str | None, mapping: Mapping[str, Any]) -> str | None:
    """``"won"``, ``"lost"`` or ``None`` (still open) for a status or stage, by the mapping's
    ``won`` and ``lost`` sets."""
    if value in mapping["won"]:
        return "won"
    if value in mapping["lost"]:
        return "lost"
    return None


def group(values: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The nested object under ``key`` (``form["account"]``), or an empty one."""
    found = values.get(key)
    return found if isinstance(found, dict) else {}


def lead_fields(mapping: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the lead fields named in ``mapping`` (``{"source": "UF_CRM_SOURCE"}``) out of ``values``."""
    fields = {}
    for ours, theirs in mapping.items():
        value = values.get(theirs)
        if isinstance(value, list):
            value = value[0] if value else None
        if text(value) is not None:
            fields[ours] = text(value)
    return fields


# --- events -------------------------------------------------------------------------------


def make_event(where: str, **fields: Any) -> LeadEvent:
    """Build a :class:`LeadEvent`, dropping ``None`` values; a bad value raises :class:`InvalidEvent`."""
    lead = {key: value for key, value in (fields.pop("lead", None) or {}).items() if value is not None}
    data = {key: value for key, value in fields.items() if value is not None}
    data["lead"] = lead
    try:
        return LeadEvent.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        path = ".".join(str(part) for part in error["loc"])
        raise InvalidEvent(f"{where}.{path}" if where else path, error["msg"]) from None


_ORDER = {kind: rank for rank, kind in enumerate(EVENT_TYPES)}


def ordered(events: Iterable[LeadEvent]) -> list[LeadEvent]:
    """Events oldest first; events of one moment in the order a lead lives them (created … closed)."""
    return sorted(events, key=lambda event: (event.occurred_at, _ORDER[event.type]))


def unique(events: Iterable[LeadEvent]) -> list[LeadEvent]:
    """Drop repeated events (same ``event_id``) inside one request, keeping the first."""
    seen: set[str] = set()
    result = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            result.append(event)
    return result


def customer_id(crm: str, kind: str, value: Any) -> str | None:
    """``lead.customer`` for a CRM company or contact id (``pipedrive:org:1``); ``0`` means none."""
    if isinstance(value, dict):
        value = value.get("value", value.get("id"))
    found = text(value)
    return f"{crm}:{kind}:{found}" if found and found != "0" else None
