"""Native CRM webhooks: amoCRM/Kommo, Bitrix24, HubSpot and Pipedrive.

Every request goes the same way, and nothing slow happens on it (amoCRM wants an answer
within 2 seconds, Bitrix24 never retries):

1. the CRM is not enabled (its required settings are absent) → 404;
2. the body is over ``SLA_GUARD_MAX_BODY_BYTES`` → 413 (chunked bodies too);
3. amoCRM's path token is wrong → 401, before its body is decoded;
4. a form body (amoCRM, Bitrix24: their credentials travel inside it) that does not decode,
   e.g. cut short → 400 naming the field;
5. the adapter's ``verify`` refuses it → 401 naming the reason;
6. the adapter's ``parse`` refuses it, or an event is outside the input bounds → 400 naming
   the field;
7. the events, and the REST look-ups a Bitrix24 notification needs, are committed to the
   database in one transaction and acknowledged with 202 (:func:`.webhooks.ingest`); kinds
   sla-guard does not use are acknowledged too, counted and listed under ``ignored``.

The REST reads (Bitrix24's records, amoCRM's loss reasons) are queued for the workers
(:mod:`sla_guard.ingest.crm_sync`).
"""

from __future__ import annotations

import time
from types import ModuleType

from flask import Blueprint, current_app, request

from sla_guard.config import of_app
from sla_guard.core.events import LeadEvent
from sla_guard.endpoints import clock_now, error
from sla_guard.exceptions import ConfigError, InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import ADAPTERS, RawRequest, amocrm, bitrix24, hubspot, pipedrive
from sla_guard.ingest.adapters.base import parse_form
from sla_guard.ingest.crm_sync import record_loss_reasons
from sla_guard.ingest.webhooks import ingest, log, read_body, reject

bp = Blueprint("crm", __name__, url_prefix="/webhooks")

REQUIRED: dict[str, tuple[str, ...]] = {
    "amocrm": (amocrm.TOKEN, amocrm.ACCOUNT_ID),
    "bitrix24": (bitrix24.APP_TOKEN, bitrix24.REST_URL),
    "hubspot": (hubspot.CLIENT_SECRET,),
    "pipedrive": (pipedrive.USER, pipedrive.PASSWORD),
}
"""The settings that enable each CRM's endpoint."""

NAMES = {"amocrm": "amoCRM", "bitrix24": "Bitrix24", "hubspot": "HubSpot", "pipedrive": "Pipedrive"}

FORM_BODIES = frozenset({"amocrm", "bitrix24"})
"""CRMs that post form bodies carrying their credentials: such a body must decode first."""

AUTH_FIELD = {
    "amocrm": "token",
    "bitrix24": "auth[application_token]",
    "hubspot": "X-HubSpot-Signature-v3",
    "pipedrive": "Authorization",
}
"""What a 401 names as the field that failed."""


def _raw_request(body: bytes) -> RawRequest:
    return RawRequest(
        method=request.method,
        path=request.path,
        url=request.url,
        headers=dict(request.headers),
        body=body,
        content_type=request.content_type or "",
    )


def _receive(crm: str):
    started = time.perf_counter()
    adapter: ModuleType = ADAPTERS[crm]
    app_settings = of_app(current_app)
    settings = app_settings.crm(crm)
    if not adapter.enabled(settings):
        return error(404, f"the {NAMES[crm]} webhook is not enabled: set {' and '.join(REQUIRED[crm])}")
    body = read_body()
    if body is None:
        return reject(crm, "too_large", 413, "request body is over the size limit", "body")
    raw = _raw_request(body)
    now = clock_now()
    if crm == "amocrm":  # its secret is in the path: checked before the body is even decoded
        try:
            amocrm.verify_token(raw, settings)
        except Unauthorized as exc:
            return reject(crm, "signature", 401, exc.reason, AUTH_FIELD[crm])
    try:
        if crm in FORM_BODIES:
            parse_form(raw)
    except InvalidEvent as exc:
        return reject(crm, "malformed", 400, exc.message, exc.field)
    try:
        adapter.verify(raw, settings, now)
    except Unauthorized as exc:
        field = "account[id]" if crm == "amocrm" and "account" in exc.reason else AUTH_FIELD[crm]
        return reject(crm, "signature", 401, exc.reason, field)
    try:
        result = adapter.parse(raw, settings, received_at=now) if crm == "amocrm" else adapter.parse(raw, settings)
    except InvalidEvent as exc:
        return reject(crm, "invalid", 400, exc.message, exc.field)
    except ConfigError as exc:
        log.error("CRM webhook not read: a setting is invalid", extra={"source": crm, "error": str(exc)})
        return error(503, f"sla-guard cannot read {NAMES[crm]} webhooks until a setting is fixed: {exc}")
    also = _loss_reasons if crm == "amocrm" else None
    return ingest(crm, result.events, started, ignored=result.ignored, lookups=result.lookups, also_store=also)


def _loss_reasons(session, events: list[LeadEvent], now) -> list:
    """The loss-reason reads of newly lost amoCRM leads (REST credentials set), recorded with the events."""
    return record_loss_reasons(session, of_app(current_app), events, now)


@bp.post("/amocrm/<token>")
def amocrm_webhook(token: str):
    """amoCRM/Kommo: the secret token is the last path segment (checked by the adapter)."""
    return _receive("amocrm")


@bp.post("/bitrix24")
def bitrix24_webhook():
    return _receive("bitrix24")


@bp.post("/hubspot")
def hubspot_webhook():
    return _receive("hubspot")


@bp.post("/pipedrive")
def pipedrive_webhook():
    return _receive("pipedrive")
