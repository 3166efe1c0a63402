"""What the API's views share: the bearer-token check, times as ISO 8601."""

from __future__ import annotations

from datetime import datetime

from flask import current_app, request

from sla_guard.config import of_app
from sla_guard.endpoints import error
from sla_guard.exceptions import Unauthorized
from sla_guard.security import verify_bearer


def iso(value: datetime | None) -> str | None:
    """An aware time as ISO 8601 with ``Z`` (None stays None)."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def require_token():
    """A blueprint's ``before_request``: 401 unless the request carries the API's bearer token."""
    try:
        verify_bearer(request.headers.get("Authorization"), of_app(current_app).api_token)
    except Unauthorized as exc:
        response = error(401, exc.reason, field="Authorization")
        response.headers["WWW-Authenticate"] = 'Bearer realm="sla-guard"'
        return response
    return None
