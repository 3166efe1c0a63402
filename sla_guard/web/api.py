"""The read API: leads with their timelines, overdue lists, the reports. Bearer token required."""

from __future__ import annotations

import json
from datetime import datetime

from flask import Blueprint, Response, current_app, jsonify, request

from sla_guard.endpoints import clock_now, error
from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports import Report, Visibility, parse_query, run_report
from sla_guard.reports.spend import parse_spend
from sla_guard.store.db import get_db
from sla_guard.store.insight import upsert_spend
from sla_guard.store.leads import LEAD_STATUSES, lead_history, leads_by_status
from sla_guard.store.models import ClockRow, LeadRow
from sla_guard.store.repository import LEAD_FIELDS, clock_state
from sla_guard.web.context import iso, require_token

bp = Blueprint("api", __name__, url_prefix="/api")


bp.before_request(require_token)


def _lead_json(lead: LeadRow) -> dict:
    return {
        "lead_id": lead.lead_id,
        **{name: getattr(lead, name) for name in LEAD_FIELDS},
        "status": lead.status,
        "known": lead.known,
        "created_at": iso(lead.created_at),
        "first_touch_at": iso(lead.first_touch_at),
        "closed_at": iso(lead.closed_at),
        "outcome": lead.outcome,
        "reason": lead.reason,
        "rule": lead.rule_name,
        "rule_version": lead.rule_version,
        "last_event_at": iso(lead.last_event_at),
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
        "started_at": iso(clock.started_at),
        "due_at": iso(clock.due_at),
        "stopped_at": iso(clock.stopped_at),
        "stop_reason": clock.stop_reason,
        "paused_at": iso(clock.paused_at),
        "paused_budget_used_s": clock.budget_used_s or 0.0,
        "next_fire_at": iso(clock.next_fire_at),
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
    now = clock_now()
    with get_db(current_app).session() as session:
        leads, running = leads_by_status(session, status, now, limit, offset)
    items = [
        {**_lead_json(lead), "open_clocks": [_clock_json(clock, now) for clock in running.get(lead.lead_id, [])]}
        for lead in leads
    ]
    return jsonify({"status": status, "count": len(items), "limit": limit, "offset": offset, "leads": items})


@bp.get("/leads/<path:lead_id>")
def get_lead(lead_id: str):
    now = clock_now()
    with get_db(current_app).session() as session:
        history = lead_history(session, lead_id)
    if history is None:
        return error(404, f"no lead {lead_id!r}", field="lead_id")
    lead, events, clocks = history.lead, history.events, history.clocks
    escalations, alerts, tasks = history.escalations, history.alerts, history.tasks
    clock_names = {clock.id: clock.name for clock in clocks}
    body = {
        **_lead_json(lead),
        "clocks": [_clock_json(clock, now) for clock in clocks],
        "events": [
            {
                "event_id": e.event_id,
                "source": e.source,
                "type": e.type,
                "occurred_at": iso(e.occurred_at),
                "received_at": iso(e.received_at),
                "processed_at": iso(e.processed_at),
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
                "due_at": iso(x.due_at),
                "fired_at": iso(x.fired_at),
                "late_by_s": round((x.fired_at - x.due_at).total_seconds(), 3),
                "owner": x.owner,
                "reassigned_to": x.reassigned_to,
                "acknowledged_at": iso(x.acknowledged_at),
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
                "created_at": iso(a.created_at),
                "delivered_at": iso(a.delivered_at),
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
            "due_at": iso(t.due_at),
            "attempts": t.attempts,
            "last_error": t.last_error,
            "updated_at": iso(t.updated_at),
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
    query = parse_query(args, clock_now(), rules.spec.timezone, visibility)
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
        stored = upsert_spend(session, rows, clock_now())
    return jsonify({"upserted": stored})
