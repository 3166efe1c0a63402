"""Who gets an alert, on which channel, in which language, and when. Pure: ``now`` is passed in.

Roles resolve through :func:`~sla_guard.core.engine.resolve_targets` at the moment a step fires
(a lead reassigned mid-ladder alerts its new owner and their manager). Then quiet hours apply
to each person: an alert for someone whose night it is either waits for their morning (its
``not_before``), or, when the rules file names an ``on_duty`` person who is awake, goes to the
on-duty person instead. Channels that are not people (``ops-log``, a team hook) never wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sla_guard.core.engine import resolve_targets
from sla_guard.core.rules.notify_spec import ADDRESS_KEYS, QuietHours, needs_address, typed_channel
from sla_guard.core.rules.schema import LOG_CHANNEL, RuleSet


@dataclass(frozen=True)
class Delivery:
    """One alert to create: channel, person (None for a bare channel), role, language, earliest send time."""

    channel: str
    recipient: str | None
    role: str | None
    locale: str
    not_before: datetime | None = None
    instead_of: str | None = None


def quiet_until(quiet: QuietHours, default_zone: str, now: datetime) -> datetime | None:
    """When the quiet period that ``now`` falls in ends (aware UTC), or None outside quiet hours.

    ``from`` later than ``to`` (20:00-09:00) spans midnight. Times are wall-clock times in the
    person's zone, so the night keeps its local hours across DST changes.
    """
    zone = ZoneInfo(quiet.timezone or default_zone)
    local = now.astimezone(zone)
    clock, day = local.time().replace(tzinfo=None), local.date()
    if quiet.start < quiet.end:
        end_day = day if quiet.start <= clock < quiet.end else None
    elif clock >= quiet.start:
        end_day = day + timedelta(days=1)
    elif clock < quiet.end:
        end_day = day
    else:
        end_day = None
    if end_day is None:
        return None
    end = datetime.combine(end_day, quiet.end, tzinfo=zone).astimezone(now.tzinfo)
    return end if end > now else None


def person_locale(rules: RuleSet, person: str | None) -> str:
    spec = rules.people.get(person) if person else None
    return (spec.locale if spec and spec.locale else None) or rules.spec.locale


def _is_log(rules: RuleSet, channel: str) -> bool:
    spec = rules.channels.get(channel)
    return (channel == LOG_CHANNEL and spec is None) or (spec is not None and spec.type == "log")


def person_quiet_until(rules: RuleSet, person: str | None, now: datetime) -> datetime | None:
    spec = rules.people.get(person) if person else None
    if spec is None or spec.quiet_hours is None:
        return None
    return quiet_until(spec.quiet_hours, spec.timezone or rules.spec.timezone, now)


def _on_duty(rules: RuleSet, role: str | None, instead_of: str, now: datetime) -> list[Delivery] | None:
    """The on-duty person's deliveries, or None when there is no one awake to take over."""
    person = rules.spec.on_duty
    if not person or person == instead_of or person_quiet_until(rules, person, now) is not None:
        return None
    spec = rules.people.get(person)
    channels = spec.channels if spec and spec.channels else (LOG_CHANNEL,)
    locale = person_locale(rules, person)
    return [Delivery(channel, person, role, locale, None, instead_of) for channel in channels]


def route(notify: tuple[str, ...], fields: dict[str, Any], rules: RuleSet, now: datetime) -> list[Delivery]:
    """The alerts a step creates at ``now``: one per (channel, recipient), quiet hours applied."""
    out: list[Delivery] = []
    for target in resolve_targets(notify, fields, rules):
        locale = person_locale(rules, target.recipient)
        wait = None if _is_log(rules, target.channel) else person_quiet_until(rules, target.recipient, now)
        if wait is None:
            out.append(Delivery(target.channel, target.recipient, target.role, locale))
            continue
        instead = _on_duty(rules, target.role, target.recipient, now)
        out.extend(
            instead
            if instead is not None
            else [Delivery(target.channel, target.recipient, target.role, locale, not_before=wait)]
        )
    unique: dict[tuple[str, str | None], Delivery] = {}
    for item in out:
        unique.setdefault((item.channel, item.recipient), item)
    return list(unique.values())


def address_for(rules: RuleSet, channel_name: str, recipient: str | None) -> str | int | None:
    """The recipient's own address on a channel that names no destination (chat id, member id, e-mail)."""
    channel = rules.channels.get(channel_name)
    person = rules.people.get(recipient) if recipient else None
    if channel is not None and channel.type == "crm":
        return (person.crm_id if person and person.crm_id is not None else None) or recipient
    if channel is None or person is None or channel.type not in ADDRESS_KEYS:
        return None
    try:
        key = needs_address(typed_channel(channel))
    except (ValueError, KeyError):
        return None
    return getattr(person, key) if key else None
