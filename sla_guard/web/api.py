"""The read API: leads with their timelines, overdue lists, the reports. Bearer token required."""

from __future__ import annotations

import json
from datetime import datetime

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import exists, select

from sla_guard.config import of_app
from sla_guard.exceptions import InvalidReportQuery, Unauthorized
from sla_guard.reports import Report, Visibility, parse_query, run_report
from sla_guard.reports.spend import parse_spend
from sla_guard.security import verify_bearer
from sla_guard.store.db import get_db
from sla_guard.store.insight import upsert_spend
from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, EventRow, FollowUpTaskRow, LeadRow
from sla_guard.store.repository import LEAD_FIELDS, clock_state
from sla_guard.web.errors import error

bp = Blueprint("api", __name__, url_prefix="/api")

LEAD_STATUSES = ("overdue", "open", "closed")
"""Values of ``GET /api/leads?status=``."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _now() -> datetime:
    return current_app.extensions["sla_guard.clock"]()


@bp.before_request
def require_token():
    """Refuse the request (401) unless it carries the API's bearer token."""
    try:
        verify_bearer(request.headers.get("Authorization"), of_app(current_app).api_token)
    except Unauthorized as exc:
        response = error(401, exc.reason, field="Authorization")
        response.headers["WWW-Authenticate"] = 'Bearer realm="sla-guard"'
        return response
    return None


def _lead_json(lead: LeadRow) -> dict:
    return {
        "lead_id": lead.lead_id,
        **{name: getattr(lead, name) for name in LEAD_FIELDS},
        "status": lead.status,
        "known": lead.known,
        "created_at": _iso(lead.created_at),
        "first_touch_at": _iso(lead.first_touch_at),
        "closed_at": _iso(lead.closed_at),
        "outcome": lead.outcome,
        "reason": lead.reason,
        "rule": lead.rule_name,
        "rule_version": lead.rule_version,
        "last_event_at": _iso(lead.last_event_at),
    }


def _clock_json(clock: ClockRow, now: datetime) -> dict:
    state = clock_state(clock)
    return {
        "id": clock.id,
        "name": clock.name,
        "cycle": clock.cycle,
        "rule": clock.rule_name,
        "rule_version": clock.rule_version,
        "status": state.status(now),
        "started_at": _iso(clock.started_at),
        "due_at": _iso(clock.due_at),
        "stopped_at": _iso(clock.stopped_at),
        "stop_reason": clock.stop_reason,
        "paused_at": _iso(clock.paused_at),
        "paused_budget_used_s": clock.budget_used_s or 0.0,
        "next_fire_at": _iso(clock.next_fire_at),
    }


def _int_arg(name: str, default: int, low: int, high: int):
    raw = request.args.get(name)
    if raw is None:
        return default, None
    try:
        value = int(raw)
    except ValueError:
        return None, error(400, f"{name} must be a whole number", field=name)
    if not low <= value <= high:
        return None, error(400, f"{name} must be between {low} and {high}", field=name)
    return value, None


@bp.get("/leads")
def list_leads():
    status = request.args.get("status", "open")
    if status not in LEAD_STATUSES:
        return error(400, f"status must be one of {', '.join(LEAD_STATUSES)}", field="status")
    limit, problem = _int_arg("limit", 100, 1, 1000)
    if problem:
        return problem
    offset, problem = _int_arg("offset", 0, 0, 10**9)
    if problem:
        return problem
    now = _now()
    statement = select(LeadRow)
    overdue_clock = exists().where(
        ClockRow.lead_id == LeadRow.lead_id, ClockRow.stopped_at.is_(None), ClockRow.due_at <= now
    )
    if status == "overdue":
        statement = statement.where(overdue_clock)
    elif status == "open":
        statement = statement.where(LeadRow.status == "open")
    else:
        statement = statement.where(LeadRow.status != "open")
    statement = statement.order_by(LeadRow.created_at.desc(), LeadRow.lead_id).limit(limit).offset(offset)
    with get_db(current_app).session() as session:
        leads = session.execute(statement).scalars().all()
        clocks = (
            session.execute(
                select(ClockRow).where(
                    ClockRow.lead_id.in_([lead.lead_id for lead in leads]), ClockRow.stopped_at.is_(None)
                )
            )
            .scalars()
            .all()
        )
    open_clocks: dict[str, list] = {}
    for clock in clocks:
        open_clocks.setdefault(clock.lead_id, []).append(_clock_json(clock, now))
    items = [{**_lead_json(lead), "open_clocks": open_clocks.get(lead.lead_id, [])} for lead in leads]
    return jsonify({"status": status, "count": len(items), "limit": limit, "offset": offset, "leads": items})


@bp.get("/leads/<path:lead_id>")
def get_lead(lead_id: str):
    now = _now()
    with get_db(current_app).session() as session:
        lead = session.get(LeadRow, lead_id)
        if lead is None:
            return error(404, f"no lead {lead_id!r}", field="lead_id")
        events = (
            session.execute(
                select(EventRow).where(EventRow.lead_id == lead_id).order_by(EventRow.occurred_at, EventRow.id)
            )
            .scalars()
            .all()
        )
        clocks = (
            session.execute(
                select(ClockRow).where(ClockRow.lead_id == lead_id).order_by(ClockRow.started_at, ClockRow.id)
            )
            .scalars()
            .all()
        )
        escalations = (
            session.execute(
                select(EscalationRow)
                .where(EscalationRow.lead_id == lead_id)
                .order_by(EscalationRow.fired_at, EscalationRow.id)
            )
            .scalars()
            .all()
        )
        alerts = (
            session.execute(select(AlertRow).where(AlertRow.lead_id == lead_id).order_by(AlertRow.id)).scalars().all()
        )
        tasks = (
            session.execute(
                select(FollowUpTaskRow).where(FollowUpTaskRow.lead_id == lead_id).order_by(FollowUpTaskRow.id)
            )
            .scalars()
            .all()
        )
    clock_names = {clock.id: clock.name for clock in clocks}
    body = {
        **_lead_json(lead),
        "clocks": [_clock_json(clock, now) for clock in clocks],
        "events": [
            {
                "event_id": e.event_id,
                "source": e.source,
                "type": e.type,
                "occurred_at": _iso(e.occurred_at),
                "received_at": _iso(e.received_at),
                "processed_at": _iso(e.processed_at),
                "data": json.loads(e.payload),
            }
            for e in events
        ],
        "escalations": [
            {
                "id": x.id,
                "clock": clock_names.get(x.clock_id),
                "level": x.level,
                "kind": x.kind,
                "due_at": _iso(x.due_at),
                "fired_at": _iso(x.fired_at),
                "late_by_s": round((x.fired_at - x.due_at).total_seconds(), 3),
                "owner": x.owner,
                "reassigned_to": x.reassigned_to,
                "acknowledged_at": _iso(x.acknowledged_at),
                "acknowledged_by": x.acknowledged_by,
            }
            for x in escalations
        ],
        "alerts": [
            {
                "id": a.id,
                "escalation_id": a.escalation_id,
                "channel": a.channel,
                "recipient": a.recipient or None,
                "role": a.role,
                "status": a.status,
                "attempts": a.attempts,
                "last_error": a.last_error,
                "created_at": _iso(a.created_at),
                "delivered_at": _iso(a.delivered_at),
            }
            for a in alerts
        ],
    }
    clock_cycles = {clock.id: clock.cycle for clock in clocks}
    body["follow_up_tasks"] = [
        {
            "id": t.id,
            "step": clock_names.get(t.clock_id),
            "cycle": clock_cycles.get(t.clock_id),
            "status": t.status,
            "crm": t.crm,
            "crm_task_id": t.crm_task_id,
            "owner": t.owner,
            "text": t.text,
            "due_at": _iso(t.due_at),
            "attempts": t.attempts,
            "last_error": t.last_error,
            "updated_at": _iso(t.updated_at),
        }
        for t in tasks
    ]
    timeline = [{"at": e["occurred_at"], "what": e["type"], "event_id": e["event_id"]} for e in body["events"]]
    timeline += [
        {"at": t["updated_at"], "what": f"task.{t['status']}", "step": t["step"], "crm_task_id": t["crm_task_id"]}
        for t in body["follow_up_tasks"]
    ]
    timeline += [
        {"at": c["started_at"], "what": "clock.started", "clock": c["name"], "due_at": c["due_at"]}
        for c in body["clocks"]
    ]
    timeline += [
        {"at": c["stopped_at"], "what": f"clock.{c['status']}", "clock": c["name"], "reason": c["stop_reason"]}
        for c in body["clocks"]
        if c["stopped_at"]
    ]
    timeline += [
        {"at": x["fired_at"], "what": x["kind"], "level": x["level"], "clock": x["clock"]} for x in body["escalations"]
    ]
    timeline += [
        {"at": a["delivered_at"], "what": "alert.delivered", "channel": a["channel"], "recipient": a["recipient"]}
        for a in body["alerts"]
        if a["delivered_at"]
    ]
    body["timeline"] = sorted(timeline, key=lambda item: item["at"])
    return jsonify(body)


def report_response(report: Report, csv_wanted: bool):
    """A report as JSON, or as a CSV download when ``csv_wanted``."""
    if not csv_wanted:
        return jsonify(report.as_json())
    name = "-".join(
        [report.name, *[str(v) for v in report.meta.values()], report.query.start.date().isoformat()]
        + [report.query.end.date().isoformat()]
    )
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return Response(
        report.as_csv(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{safe}.csv"'},
    )


def compute_report(name: str, args, visibility: Visibility | None = None) -> Report:
    """Run report ``name`` for request ``args`` in the app's rules time zone."""
    rules = current_app.extensions["sla_guard.rules"].current()
    query = parse_query(args, _now(), rules.spec.timezone, visibility)
    with get_db(current_app).engine.connect() as connection:
        return run_report(name, connection, query, args, rules)


@bp.get("/reports/<name>")
def report(name: str):
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        return error(400, "format must be json or csv", field="format")
    try:
        computed = compute_report(name, request.args)
    except InvalidReportQuery as exc:
        return error(404 if exc.field == "name" else 400, exc.message, field=exc.field)
    return report_response(computed, fmt == "csv")


@bp.post("/spend")
def post_spend():
    """Marketing spend: a JSON array of ``{month, source, amount}``, upserted by month and source."""
    body = request.get_json(silent=True)
    try:
        rows = parse_spend(body)
    except InvalidReportQuery as exc:
        return error(400, exc.message, field=exc.field)
    with get_db(current_app).session() as session:
        stored = upsert_spend(session, rows, _now())
    return jsonify({"upserted": stored})
