"""``/api/quarantine``: leads whose events could not be applied, and their retry after a fix.

A quarantined lead blocks nobody else; it waits here until an operator has fixed the cause
(a new version, a corrected rules file) and retries it. Bearer token required.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError

from sla_guard.config import of_app
from sla_guard.core.bounds import ID_MAX, text_problem
from sla_guard.endpoints import error
from sla_guard.ingest.processing import push
from sla_guard.store.db import get_db
from sla_guard.store.quarantine import quarantined, release
from sla_guard.web.api import require_token

bp = Blueprint("quarantine", __name__, url_prefix="/api/quarantine")
bp.before_request(require_token)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@bp.get("")
def list_quarantined():
    """Every quarantined lead with the reason, its failures and the events waiting for it."""
    with get_db(current_app).session() as session:
        rows = quarantined(session)
    leads = [
        {
            "lead_id": row.lead_id,
            "error": row.error,
            "reason": row.reason,
            "failures": row.failures,
            "first_failed_at": _iso(row.first_failed_at),
            "last_failed_at": _iso(row.last_failed_at),
            "events_waiting": waiting,
        }
        for row, waiting in rows
    ]
    return jsonify({"count": len(leads), "leads": leads})


@bp.post("/<path:lead_id>/retry")
def retry(lead_id: str):
    """Take the lead out of quarantine and have a worker apply its events again (202).

    Should they fail again, the lead is quarantined again with the new reason.
    """
    if text_problem(lead_id, ID_MAX):  # no such lead can be stored, let alone quarantined
        return error(404, "this lead is not quarantined", field="lead_id")
    with get_db(current_app).session() as session:
        released = release(session, [lead_id])
    if not released:
        return error(404, "this lead is not quarantined", field="lead_id")
    try:
        push(current_app.extensions["sla_guard.redis"], of_app(current_app).queue, released)
    except RedisError:
        pass  # its unapplied events are picked up by the reconciler once Redis is back
    return jsonify({"retried": released}), 202
