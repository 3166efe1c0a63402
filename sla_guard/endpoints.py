"""What every HTTP endpoint shares, the API's and the webhooks' alike: JSON error bodies for every
refusal (a status code and the field or reason), the handlers that turn failures into them, and
the app's clock.

Statuses are honest: a service that is down (the database, Redis) gives ``503`` with
``Retry-After`` (the caller retries), a value the database refuses gives ``400``, and anything
unexpected gives a bare ``500`` whose log line names the route, never the path as sent (the
amoCRM webhook path carries its secret token).
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("sla_guard.web")

RETRY_AFTER_S = 5
"""What a ``503`` asks the caller to wait before retrying."""


def error(status: int, message: str, field: str | None = None, **extra):
    body = {"error": message, **extra}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def clock_now() -> datetime:
    """The app's clock: the aware UTC time now (tests inject their own)."""
    return current_app.extensions["sla_guard.clock"]()


def route() -> str:
    """The matched route pattern (``/webhooks/amocrm/<token>``), safe to log."""
    rule = request.url_rule
    return rule.rule if rule is not None else "(no route)"


def init_app(app) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        message = {413: "request body is over the size limit"}.get(exc.code, exc.description or exc.name)
        return error(exc.code or 500, message, field="body" if exc.code == 413 else None)

    @app.errorhandler(DataError)
    def _refused_value(exc: DataError):
        log.info("request refused: the database cannot store a value", extra={"route": route()})
        return error(400, "a value cannot be stored (out of range or not valid text)")

    @app.errorhandler(SQLAlchemyError)
    def _database_down(exc: SQLAlchemyError):
        log.warning("database unavailable", extra={"route": route(), "error": type(exc).__name__})
        return error(503, "the database is unavailable; retry later")

    @app.errorhandler(RedisError)
    def _redis_down(exc: RedisError):
        log.warning("Redis unavailable", extra={"route": route(), "error": type(exc).__name__})
        return error(503, "Redis is unavailable; retry later")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.error(
            "unexpected error",
            extra={"route": route(), "method": request.method, "error": type(exc).__name__},
            exc_info=exc,
        )
        return error(500, "internal error")
