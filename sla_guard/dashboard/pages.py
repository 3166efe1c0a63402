"""The dashboard's pages: *Now*, then one page per report with its filters, table, chart and CSV."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for

from sla_guard.dashboard.auth import login_required, visibility
from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports import REPORTS, parse_query, run_report
from sla_guard.reports.now import AT_RISK_S, by_owner, wall
from sla_guard.reports.query import FILTERS
from sla_guard.reports.spend import parse_spend_csv
from sla_guard.store.db import get_db
from sla_guard.store.insight import upsert_spend
from sla_guard.store.models import EscalationRow, LeadRow
from sla_guard.timers.acknowledge import AckClaim, acknowledge

bp = Blueprint(
    "pages",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PAGES = ("now", *REPORTS)
"""Navigation order."""

GROUPINGS = {"sla": ("owner", "source", "team", "rule", "week"), "losses": ("reason", "stage", "source", "owner")}
REFRESH_S = 30
SPEND_ROLES = ("admin", "marketing")

CHARTS = {
    "sla": ("compliance",),
    "speed": ("leads", "won"),
    "funnel": ("entered", "advanced"),
    "losses": ("lost",),
    "marketing": ("revenue", "spend"),
}
"""The fields each page charts, from the same rows as its table."""


def _now() -> datetime:
    return current_app.extensions["sla_guard.clock"]()


def _zone() -> str:
    return current_app.extensions["sla_guard.rules"].current().spec.timezone


@bp.get("/")
@login_required
def index():
    return redirect(url_for("pages.now"))


@bp.get("/now")
@login_required
def now():
    filters = {name: request.args[name] for name in FILTERS if request.args.get(name)}
    with get_db(current_app).engine.connect() as connection:
        rows = wall(connection, _now(), filters, visibility(g.user))
    return render_template(
        "now.html",
        page="now",
        groups=by_owner(rows),
        filters=filters,
        refresh_s=REFRESH_S,
        at_risk_s=AT_RISK_S,
        zone=_zone(),
    )


@bp.post("/ack/<int:escalation_id>")
@login_required
def ack(escalation_id: int):
    now_at = _now()
    claim = AckClaim(escalation_id, g.user.name, now_at + timedelta(minutes=1))
    with get_db(current_app).session() as db:
        row = db.get(EscalationRow, escalation_id)
        lead = db.get(LeadRow, row.lead_id) if row else None
        seen = visibility(g.user)
        if lead is None or (seen is not None and lead.team not in seen.teams and lead.owner not in seen.owners):
            abort(404)
        acknowledge(db, claim, now_at)
    return redirect(url_for("pages.now", **{k: v for k, v in request.args.items() if k in FILTERS}))


def _form_args() -> dict:
    """The request's parameters, with the form's ``to`` date taken as inclusive (the API's is not)."""
    args = dict(request.args)
    if len(args.get("to", "")) == 10:
        try:
            args["to"] = (date.fromisoformat(args["to"]) + timedelta(days=1)).isoformat()
        except ValueError:
            pass  # parse_query names the field
    return args


def _compute(name: str):
    rules = current_app.extensions["sla_guard.rules"].current()
    args = _form_args()
    query = parse_query(args, _now(), rules.spec.timezone, visibility(g.user))
    with get_db(current_app).engine.connect() as connection:
        return run_report(name, connection, query, args, rules)


def _computed(name: str):
    """``(report, None)``, or ``(None, the problem)`` with the reader's query; 404 for a report
    that does not exist."""
    if name not in REPORTS:
        abort(404)
    try:
        return _compute(name), None
    except InvalidReportQuery as exc:
        return None, exc


def _chart(name: str, report) -> dict:
    key = report.columns[0]
    labels = [
        " ".join(str(row.get(part)) for part in ("source", "month")) if name == "marketing" else str(row.get(key))
        for row in report.rows
    ]
    return {
        "type": "bar",
        "labels": labels,
        "datasets": [{"label": field, "data": [row.get(field) for row in report.rows]} for field in CHARTS[name]],
    }


@bp.get("/<name>")
@login_required
def report_page(name: str):
    report, problem = _computed(name)
    if problem is not None:
        return render_template("report.html", page=name, problem=problem, args=request.args, zone=_zone()), 400
    zone = ZoneInfo(_zone())
    last_day = (report.query.end - timedelta(microseconds=1)).astimezone(zone).date()
    return render_template(
        "report.html",
        page=name,
        report=report,
        problem=None,
        args=request.args,
        groupings=GROUPINGS.get(name, ()),
        chart=_chart(name, report),
        csv_url=url_for("pages.report_csv", name=name, **request.args),
        may_upload=g.user.role in SPEND_ROLES and name == "marketing",
        saved=request.args.get("saved"),
        zone=_zone(),
        first_day=report.query.start.astimezone(zone).date(),
        last_day=last_day,
    )


@bp.get("/<name>.csv")
@login_required
def report_csv(name: str):
    report, problem = _computed(name)
    if problem is not None:
        return Response(f"{problem.field}: {problem.message}\n", status=400, mimetype="text/plain")
    return Response(
        report.as_csv(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@bp.post("/spend")
@login_required
def upload_spend():
    if g.user.role not in SPEND_ROLES:
        abort(403)
    upload = request.files.get("file")
    try:
        text = upload.read(2_000_000).decode("utf-8") if upload else ""
        rows = parse_spend_csv(text)
    except UnicodeDecodeError:
        return _upload_problem(InvalidReportQuery("file", "the file must be UTF-8 text"))
    except InvalidReportQuery as exc:
        return _upload_problem(exc)
    with get_db(current_app).session() as db:
        stored = upsert_spend(db, rows, _now())
    return redirect(url_for("pages.report_page", name="marketing", saved=stored))


def _upload_problem(exc: InvalidReportQuery):
    return render_template("report.html", page="marketing", problem=exc, args={}, zone=_zone()), 400
