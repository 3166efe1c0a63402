"""Rules administration over the API: see the version in force, reload without a restart."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from sla_guard.core.rules.lint import lint
from sla_guard.endpoints import clock_now, error
from sla_guard.store.db import get_db
from sla_guard.store.rule_versions import record_rule_version, rule_versions
from sla_guard.web.context import iso, require_token

bp = Blueprint("admin", __name__, url_prefix="/api/rules")
bp.before_request(require_token)


def _holder():
    return current_app.extensions["sla_guard.rules"]


@bp.get("")
def rules_in_force():
    rules = _holder().current()
    with get_db(current_app).session() as session:
        versions = rule_versions(session)
    return jsonify(
        {
            "version": rules.version,
            "path": _holder().path,
            "rules": [rule.name for rule in rules.rules],
            "history": [{"version": version, "loaded_at": iso(loaded_at)} for version, loaded_at in versions],
        }
    )


@bp.post("/reload")
def reload_rules():
    """Check the rules file and put it in force in this process; workers follow within seconds."""
    previous = _holder().current().version
    rules, errors = _holder().try_load()
    if rules is None:
        response = error(
            422,
            "the rules file is invalid; the version in force stays",
            field="rules",
            version=previous,
            errors=[{"path": path, "message": message} for path, message in errors],
        )
        return response
    with get_db(current_app).session() as session:
        record_rule_version(session, rules.version, rules.text, clock_now())
    return jsonify(
        {
            "version": rules.version,
            "previous_version": previous,
            "changed": rules.version != previous,
            "rules": [rule.name for rule in rules.rules],
            "warnings": [{"path": path, "message": message} for path, message in lint(rules)],
        }
    )
