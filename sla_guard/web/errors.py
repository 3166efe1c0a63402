"""JSON error bodies for every refusal: a status code and the field or reason."""

from __future__ import annotations

from flask import jsonify
from werkzeug.exceptions import HTTPException


def error(status: int, message: str, field: str | None = None, **extra):
    body = {"error": message, **extra}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    return response


def init_app(app) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        message = {413: "request body is over the size limit"}.get(exc.code, exc.description or exc.name)
        return error(exc.code or 500, message, field="body" if exc.code == 413 else None)
