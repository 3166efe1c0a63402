"""Delivery through the channels of the rules file: the senders, registered by channel type, and
the outbox kinds whose rows go out through them: alerts (the first kind) and ops alerts.

A sender sends one payload, or raises a :class:`~sla_guard.exceptions.DeliveryError` saying
whether to retry. Every sender speaks HTTP through :mod:`sla_guard.outbox.http` (e-mail speaks
SMTP and sorts its reply codes into the same three kinds of error).

An alert is written with its escalation (:func:`record_alert`); one held by its recipient's
quiet hours is created with its claim set to the morning, so nothing takes it before then.
Claims, retries with backoff (or after the wait the service asked for) and giving up are the
outbox's (:mod:`sla_guard.outbox.base`). An alert that fails for good raises an ops alert, as
every kind's permanent failure does (:class:`OpsAlerts`, with the words of
:func:`sla_guard.outbox.ops_alerts.delivery_failed`), and an ops alert that fails raises no other.
Errors are stored and logged with the channel's secrets blanked out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

import requests
from sqlalchemy.orm import Session

from sla_guard import runtime as runtime_module
from sla_guard.core.rules.notify_spec import typed_channel
from sla_guard.core.rules.schema import LOG_CHANNEL, Channel, RuleSet
from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.base import ItemKind, OutboxKind
from sla_guard.outbox.http import Http
from sla_guard.outbox.notify.context import clock_facts, person_zone
from sla_guard.outbox.notify.crm import send_crm
from sla_guard.outbox.notify.messages import alert_payload
from sla_guard.outbox.notify.routing import Delivery, address_for
from sla_guard.outbox.notify.slack import send_slack
from sla_guard.outbox.notify.smtp import send_email
from sla_guard.outbox.notify.teams import send_teams
from sla_guard.outbox.notify.telegram import send_telegram
from sla_guard.outbox.ops_alerts import OPS_ROLE, delivery_failed
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.models import AlertRow, ClockRow
from sla_guard.store.outbox import insert_alert

log = logging.getLogger("sla_guard.outbox.delivery")
alerts_log = logging.getLogger("sla_guard.alerts")
"""The log the ``log`` channel writes alerts to."""


# --- senders, by channel type ----------------------------------------------------------------

Sender = Callable[..., None]
"""``sender(channel, payload, http, address, settings)``: deliver or raise :class:`DeliveryError`."""

SENDERS: dict[str, Sender] = {}
"""The client of each channel type that needs one (the ``log`` type writes to the log)."""


def register(channel_type: str, sender: Sender) -> None:
    """Make ``sender`` the client of ``channel_type``."""
    SENDERS[channel_type] = sender


def get_sender(channel_type: str) -> Sender | None:
    return SENDERS.get(channel_type)


def _webhook_headers(payload: dict) -> dict:
    """JSON headers plus the id a receiver can drop a repeat by: the alert's, or a digest's."""
    headers = {"Content-Type": "application/json", "User-Agent": "sla-guard"}
    if payload.get("alert_id") is not None:
        headers["X-SLA-Guard-Alert-Id"] = str(payload["alert_id"])
    if payload.get("digest_id") is not None:
        headers["X-SLA-Guard-Digest-Id"] = str(payload["digest_id"])
    return headers


def send_webhook(channel: Channel, payload: dict, http: requests.Session) -> None:
    """POST the alert JSON. 2xx is delivered; 408, 429 and 5xx are retried; other 4xx are final."""
    client = Http("", http, channel.timeout_s, [channel.url])
    response = client.post(
        channel.url, "", data=json.dumps(payload, ensure_ascii=False).encode(), headers=_webhook_headers(payload)
    )
    if not 200 <= response.status_code < 300:
        raise client.by_status(response, f"HTTP {response.status_code}")


def send_log(payload: dict) -> None:
    alerts_log.warning(payload["text"], extra={"alert": payload, "lead_id": payload["lead_id"]})


register("webhook", lambda channel, payload, http, address, settings: send_webhook(channel, payload, http))
register("telegram", lambda spec, payload, http, address, settings: send_telegram(spec, payload, http, address))
register("slack", lambda spec, payload, http, address, settings: send_slack(spec, payload, http, address))
register("email", lambda spec, payload, http, address, settings: send_email(spec, payload, address))
register("teams", lambda spec, payload, http, address, settings: send_teams(spec, payload, http))
register("crm", send_crm)

TYPED = ("telegram", "slack", "email", "teams", "crm")
"""Channel types whose settings are checked into a typed spec before sending."""


def send(
    channel_name: str,
    channel: Channel | None,
    payload: dict,
    http: requests.Session,
    address: str | int | None = None,
    settings: dict | None = None,
) -> None:
    """Deliver ``payload`` through the named channel; ``address`` is the recipient's own address
    on it (a Telegram chat id, a Slack member id, an e-mail address, a CRM user id) when the
    channel names none; ``settings`` hold the CRM REST settings the ``crm`` channel uses."""
    if channel is None:
        if channel_name == LOG_CHANNEL:
            send_log(payload)
            return
        raise DeliveryError(f"channel {channel_name!r} is not in the rules file", transient=False)
    if channel.type == "log":
        send_log(payload)
        return
    sender = get_sender(channel.type)
    if sender is None:
        raise DeliveryError(f"channel type {channel.type!r} cannot deliver", transient=False)
    spec = channel
    if channel.type in TYPED:
        try:
            spec = typed_channel(channel)
        except (ValueError, KeyError):
            raise DeliveryError(f"channel {channel_name!r} is misconfigured", transient=False) from None
    sender(spec, payload, http, None if address is None else str(address), settings)


def channel_secrets(channel: Channel | None) -> tuple[str, ...]:
    """The channel's secret values (tokens, passwords, webhook URLs), for redaction."""
    if channel is None:
        return ()
    try:
        return typed_channel(channel).secrets()
    except (ValueError, KeyError):
        raw = {**channel.model_dump(exclude_unset=True), **(channel.model_extra or {})}
        return tuple(str(raw[key]) for key in ("url", "token", "password") if raw.get(key))


# --- the kinds delivered through them ---------------------------------------------------------


class ChannelDelivery(OutboxKind):
    """A kind whose rows go out through a channel of the rules file (alerts, digests): each row
    names its ``channel`` and ``recipient`` and holds the ``payload``."""

    sent_column: ClassVar[str]
    """The row's column that records when it was delivered."""
    logger: ClassVar[logging.Logger] = log

    def attempt(self, runtime: Runtime, row: Any) -> str:
        rules = runtime.rules.current()
        send(
            row.channel,
            rules.channels.get(row.channel),
            json.loads(row.payload),
            runtime.http(),
            address=address_for(rules, row.channel, row.recipient or None),
            settings=runtime.settings,
        )
        done = {self.sent_column: runtime.now(), "status": "delivered", "claimed_until": None, "last_error": None}
        self.update(runtime, row.id, **done)
        self.logger.info(f"{self.name} delivered", extra=self.context(row))
        return "delivered"

    def secrets(self, runtime: Runtime, row: Any) -> tuple[str, ...]:
        return channel_secrets(runtime.rules.current().channels.get(row.channel))


class Alerts(ChannelDelivery):
    name = "alert"
    what = "alert delivery"
    model = AlertRow
    sent_column = "delivered_at"

    def context(self, row: AlertRow) -> dict:
        return {"lead_id": row.lead_id, "alert_id": row.id, "channel": row.channel, "attempt": row.attempts}

    def on_retry(self, runtime: Runtime, row: Any, error: str, wait: float, context: dict) -> None:
        log.warning("alert delivery failed, will retry", extra={**context, "error": error, "retry_in_s": wait})

    def on_give_up(self, runtime: Runtime, row: AlertRow, error: str, context: dict) -> None:
        log.error("alert delivery failed for good", extra={**context, "error": error})
        self.raise_ops_alert(runtime, row, error)

    def ops_alert(self, row: AlertRow, error: str, locale: str) -> dict | None:
        if row.role == OPS_ROLE:
            return None  # an ops alert an older version kept as an alert row raises no other
        return delivery_failed(row, error, locale)


class OpsAlerts(ItemKind):
    """Ops alerts: the channels under ``ops.notify`` hear that an item of any kind was given up.

    One item per (kind, item, channel), delivered and retried like any outgoing work; the text
    is the failed kind's (:meth:`OutboxKind.ops_alert`) and free of secrets. An ops alert that
    fails for good raises no other.
    """

    name = "ops"
    what = "ops alert"

    def raise_for(self, runtime: Runtime, kind: OutboxKind, row: Any, error: str) -> list[int]:
        """Record and send the ops alerts about a given-up item; their ids."""
        rules = runtime.rules.current()
        if kind is self or not rules.spec.ops.notify:
            return []
        payload = kind.ops_alert(row, error, rules.spec.locale)
        if payload is None:
            return []
        now = runtime.now()
        fired_at = now.isoformat().replace("+00:00", "Z")
        created = []
        with runtime.db.session() as session:
            for channel in dict.fromkeys(rules.spec.ops.notify):
                args = {"channel": channel, "payload": {**payload, "channel": channel, "fired_at": fired_at}}
                item_id = self.add(session, f"{kind.name}:{row.id}:{channel}", args, now)
                if item_id is not None:
                    created.append(item_id)
        if created:
            log.warning("ops alert raised", extra={"kind": kind.name, "item_id": row.id, "ops_alerts": created})
        for item_id in created:
            self.run(runtime, item_id)
        return created

    def ops_alert(self, row: Any, error: str, locale: str) -> None:
        return None  # a failing ops alert raises no other

    def attempt(self, runtime: Runtime, row: Any) -> str:
        args = json.loads(row.args)
        rules = runtime.rules.current()
        send(args["channel"], rules.channels.get(args["channel"]), args["payload"], runtime.http())
        self.done(runtime, row.id, "delivered")
        return "delivered"

    def context(self, row: Any) -> dict:
        args = json.loads(row.args)
        return {"item_id": row.id, "kind": self.name, "channel": args["channel"], "attempt": row.attempts}

    def secrets(self, runtime: Runtime, row: Any) -> Iterable[str]:
        return channel_secrets(runtime.rules.current().channels.get(json.loads(row.args)["channel"]))

    def on_give_up(self, runtime: Runtime, row: Any, error: str, context: dict) -> None:
        log.error("ops alert given up", extra={**context, "error": error})  # and nothing more


@job()
def deliver_ops_alert(item_id: int) -> str:
    """Job: one delivery attempt of an ops alert."""
    return OPS_ALERTS.run(runtime_module.current(), item_id)


OPS_ALERTS = OpsAlerts(deliver_ops_alert, ops=None)  # a failing ops alert raises no other


@job()
def deliver_alert(alert_id: int) -> str:
    """Job: one delivery attempt of an alert."""
    return ALERTS.run(runtime_module.current(), alert_id)


ALERTS = Alerts(deliver_alert, ops=OPS_ALERTS)


class Escalated(NamedTuple):
    """What an alert is about: an escalation of a lead's clock, under the rules of the day."""

    rules: RuleSet
    clock: ClockRow
    escalation_id: int
    lead: dict
    """The lead's fields (:func:`sla_guard.store.leads.lead_fields`)."""


def record_alert(
    session: Session,
    about: Escalated,
    target: Delivery,
    now: datetime,
    *,
    text: dict | None = None,
    press_for: Callable[[int], str | None] | None = None,
    **facts,
) -> int:
    """Write the alert ``about`` an escalation for one routed ``target`` (held until ``target.not_before`` when quiet hours
    apply) with its payload (:func:`alert_payload` of ``facts``, then ``text`` on top); its id.

    What the ``clock`` says goes into every alert (its rule and name, its deadline, the SLA and
    whether it counts business time, a follow-up's task), and so do the target's address and
    language and the recipient's and the team's time zones; ``facts`` add to it or override it. ``press_for`` makes the signed value
    of the chat's "Take it" button from the new alert's id."""
    rules, clock, escalation_id, lead = about
    known = clock_facts(rules, clock.rule_name, clock.name, lead)
    facts = {
        "rule": clock.rule_name,
        "clock": clock.name,
        "deadline_at": clock.due_at,
        "sla": known.sla,
        "business": known.business,
        "task": known.task,
        "zone": person_zone(rules, target.recipient),
        "team_zone": rules.spec.timezone,
        "recipient": target.recipient,
        "role": target.role,
        "channel": target.channel,
        "locale": target.locale,
        **facts,
    }
    alert = insert_alert(
        session,
        escalation_id=escalation_id,
        lead_id=lead["lead_id"],
        channel=target.channel,
        recipient=target.recipient,
        role=target.role,
        now=now,
        not_before=target.not_before,
    )
    if press_for is not None:
        facts["press"] = press_for(alert.id)
    payload = alert_payload(alert_id=alert.id, escalation_id=escalation_id, lead=lead, fired_at=now, **facts)
    alert.payload = json.dumps({**payload, **(text or {})}, ensure_ascii=False)
    return alert.id
