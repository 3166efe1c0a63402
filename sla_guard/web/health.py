"""Liveness, readiness (the database takes writes, Redis answers) and Prometheus metrics. No authentication."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from sla_guard import metrics
from sla_guard.config import of_app
from sla_guard.ingest.processing import set_aside_count
from sla_guard.outbox.pacing import pace_stats
from sla_guard.store.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        get_db(current_app).check_writable()
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        current_app.extensions["sla_guard.redis"].ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), 200 if ready else 503


@bp.get("/metrics")
def prometheus():
    redis, namespace = current_app.extensions.get("sla_guard.redis"), of_app(current_app).queue
    collectors = (
        []
        if redis is None
        else [
            metrics.PaceCollector(pace_stats, redis, namespace),
            metrics.TimerCollector(set_aside_count, redis, namespace),
        ]
    )
    body = metrics.render(get_db(current_app), collectors)
    return Response(body, mimetype="text/plain; version=0.0.4")
