"""amoCRM / Kommo webhooks → canonical lead events.

amoCRM posts ``application/x-www-form-urlencoded`` bodies with PHP-style bracket keys:
``leads[status][0][status_id]=143&account[id]=30307558``. One request may carry several
entities, actions and indexes; every one is read. There is no signature: the secret token is
the last segment of the webhook path, and the account id in the body must be ours.

What each kind turns into (see ``docs/crm/amocrm.md``):

- ``leads[add]`` → ``lead.created``; ``leads[update]`` → ``lead.updated`` (name, amount,
  owner, tags; the stage moves only through ``leads[status]`` so that a stage change is never
  hidden inside an update);
- ``leads[status]`` → ``lead.closed`` for the won/lost statuses (142/143), else
  ``lead.stage_changed`` with ``previous_stage`` from ``old_status_id``;
- ``leads[responsible]`` → ``lead.assigned``; ``leads[delete]`` → ``lead.closed`` without an
  outcome, reason ``deleted``; ``leads[restore]`` → ``lead.stage_changed`` (the lead reopens);
- ``leads[note]`` with a call (note types 10 incoming, 11 outgoing) or an outgoing SMS (103)
  → ``lead.touched``; a missed incoming call (duration 0) and common notes (4) are not touches;
- ``task[add|update]`` completed on a lead → ``lead.touched`` channel ``task``;
- ``message[add]`` outgoing (written by a manager) → ``lead.touched`` channel ``message``;
  an incoming message is the client talking, not an answer, so it is not a touch.

Times: unix seconds (``created_at``, ``updated_at``) are preferred. When only text times are
sent, notes carry the account's local time (``SLA_GUARD_AMOCRM_TIMEZONE``, default
Europe/Moscow) while tasks carry UTC, as observed in amoCRM's traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from sla_guard.core.events import LeadEvent
from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import access, base
from sla_guard.ingest.adapters.amocrm_events import CRM, HANDLERS, Context
from sla_guard.ingest.adapters.base import AdapterResult, RawRequest

SETTINGS = access.setting_names(
    CRM,
    "TOKEN",
    "ACCOUNT_ID",
    "TIMEZONE",
    "WON_STATUSES",
    "LOST_STATUSES",
    "FIELD_SOURCE",
    "FIELD_PRIORITY",
    "FIELD_TEAM",
    "BASE_URL",
    "ACCESS_TOKEN",
    "SUBDOMAIN",
)
"""Every setting of amoCRM (the REST ones are read by the workers, not by this module)."""
(
    TOKEN,
    ACCOUNT_ID,
    TIMEZONE,
    WON_STATUSES,
    LOST_STATUSES,
    FIELD_SOURCE,
    FIELD_PRIORITY,
    FIELD_TEAM,
    BASE_URL,
    ACCESS_TOKEN,
    SUBDOMAIN,
) = SETTINGS
AMO_DOMAINS = ("amocrm.ru", "amocrm.com", "kommo.com")
"""The domains amoCRM and Kommo accounts live under."""

DEFAULT_MAPPING: dict[str, Any] = {
    "won": frozenset({"142"}),
    "lost": frozenset({"143"}),
    "touch_notes": {"10": "call", "11": "call", "103": "sms"},
    "incoming_notes": frozenset({"10"}),
    "fields": {},
}
"""How amoCRM values map to sla-guard's: won/lost status ids, which note types are touches
(note type → touch channel), which of them are incoming, and custom fields read as lead fields
(``{"source": "<field id or name>"}``)."""


def mapping_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping, with the optional overrides of the settings.

    ``SLA_GUARD_AMOCRM_WON_STATUSES`` / ``..._LOST_STATUSES``: comma-separated status ids;
    ``SLA_GUARD_AMOCRM_FIELD_SOURCE`` / ``_PRIORITY`` / ``_TEAM``: the custom field (id or name)
    holding the lead's source, priority or team.
    """
    mapping = dict(DEFAULT_MAPPING)
    mapping["won"] = access.word_set(settings, WON_STATUSES, DEFAULT_MAPPING["won"])
    mapping["lost"] = access.word_set(settings, LOST_STATUSES, DEFAULT_MAPPING["lost"])
    mapping["fields"] = access.field_settings(settings, source=FIELD_SOURCE, priority=FIELD_PRIORITY, team=FIELD_TEAM)
    return mapping


def enabled(settings: Mapping[str, Any]) -> bool:
    """amoCRM is on when the path token and the account id are set."""
    return access.configured(settings, TOKEN, ACCOUNT_ID)


# --- authenticity -------------------------------------------------------------------------


def verify_token(raw: RawRequest, settings: Mapping[str, Any]) -> None:
    """Check the path token (last path segment) alone: possible before the body is decoded."""
    [expected] = access.secrets_to_verify(settings, "amoCRM", TOKEN)
    token = unquote(raw.path.rstrip("/").rsplit("/", 1)[-1])
    if not access.same_secret(token, expected):
        raise Unauthorized("wrong amoCRM webhook token")


def verify(raw: RawRequest, settings: Mapping[str, Any], now: datetime) -> None:
    """Check the path token (last path segment) and that the body names our account.

    amoCRM signs nothing and sends no timestamp, so ``now`` is unused. Every account id in the
    body (``account[id]`` and each entity's ``account_id``) must be ours; a body without
    ``account[id]`` is accepted when its ``account[subdomain]`` is ours (:func:`account_subdomain`).
    """
    verify_token(raw, settings)
    [account] = access.secrets_to_verify(settings, "amoCRM", ACCOUNT_ID)
    form = access.form_to_verify(raw, "the body does not name an amoCRM account")
    account_group = base.group(form, "account")
    said = base.text(account_group.get("id"))
    if said is None:
        # Some hooks name the account by subdomain only. Refusing them would make amoCRM switch
        # the hook off after 100 failures in 2 hours, so the subdomain is checked instead.
        subdomain, ours = (base.text(account_group.get("subdomain")) or "").lower(), account_subdomain(settings)
        if not subdomain or not ours:
            raise Unauthorized("the body does not name an amoCRM account")
        if not access.same_secret(subdomain, ours):
            raise Unauthorized("the webhook comes from another amoCRM account")
    elif not access.same_secret(said, account):
        raise Unauthorized("the webhook comes from another amoCRM account")
    for item in _all_items(form):
        other = base.text(item.get("account_id"))
        if other is not None and not access.same_secret(other, account):
            raise Unauthorized("an entity in the webhook belongs to another amoCRM account")


def account_subdomain(settings: Mapping[str, Any]) -> str | None:
    """The account's subdomain: ``SLA_GUARD_AMOCRM_SUBDOMAIN``, else the first label of
    ``SLA_GUARD_AMOCRM_BASE_URL`` (``https://acme.amocrm.ru`` → ``acme``)."""
    named = base.text(settings.get(SUBDOMAIN))
    if named:
        return named.lower()
    host = (urlsplit(base.text(settings.get(BASE_URL)) or "").hostname or "").lower()
    label, _, rest = host.partition(".")
    return label if rest in AMO_DOMAINS and label else None


def _all_items(form: dict[str, Any]):
    for entity, actions in form.items():
        if entity == "account" or not isinstance(actions, dict):
            continue
        for items in actions.values():
            for _, item in base.indexed(items):
                if isinstance(item, dict):
                    yield item
                    if isinstance(item.get("note"), dict):
                        yield item["note"]


# --- parsing ------------------------------------------------------------------------------


def parse(raw: RawRequest, settings: Mapping[str, Any], *, received_at: datetime | None = None) -> AdapterResult:
    """Every lead event the request carries, oldest first.

    ``received_at`` (optional) dates the rare kinds amoCRM sends without a time (a deleted
    lead); without it such items are acknowledged in ``ignored``.
    """
    form = base.parse_form(raw)
    links = base.group(base.group(form, "account"), "_links")
    context = Context(
        mapping=mapping_from_settings(settings),
        zone=access.zone(settings, TIMEZONE, "Europe/Moscow"),
        base_url=(base.text(links.get("self")) or "").rstrip("/") or None,
        received_at=received_at,
    )
    events: list[LeadEvent] = []
    ignored: list[str] = []
    for entity, actions in form.items():
        if entity == "account":
            continue
        if not isinstance(actions, dict):
            ignored.append(entity)
            continue
        for action, items in actions.items():
            if not isinstance(items, dict):
                raise InvalidEvent(f"{entity}[{action}]", "expected a list of items")
            handler = HANDLERS.get((entity, action))
            for index, item in base.indexed(items):
                where = f"{entity}[{action}][{index}]"
                if not isinstance(item, dict):
                    raise InvalidEvent(where, "expected an item with fields")
                event = handler(entity, action, item, where, context) if handler else None
                if event is None:
                    ignored.append(f"{entity}.{action}")
                else:
                    events.append(event)
    return AdapterResult(events=base.ordered(base.unique(events)), ignored=ignored)
