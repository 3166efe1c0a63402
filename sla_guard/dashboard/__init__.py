"""The dashboard at ``/dashboard``: sign-in, the *Now* wall screen and one page per report.

Server-rendered with Jinja; tables work without JavaScript and charts (Chart.js, shipped under
``static/vendor``) are drawn from the same numbers. Every number comes from
:mod:`sla_guard.reports`, narrowed to what the signed-in person may see.
"""

from __future__ import annotations

import hashlib
import hmac

from flask_wtf.csrf import CSRFProtect

from sla_guard.config import Settings, of_app

ROLES = ("admin", "head", "manager", "marketing")
"""Who may sign in: ``manager`` sees only their team; the others see everything."""

csrf = CSRFProtect()


def session_secret(settings: Settings) -> str | None:
    """``SLA_GUARD_SECRET_KEY``, else a key derived from the API token (so ``sla-guard dev`` works)."""
    if settings.secret_key:
        return settings.secret_key
    token = settings.api_token
    if token:
        return hmac.new(str(token).encode(), b"sla-guard dashboard sessions", hashlib.sha256).hexdigest()
    return None


def init_app(app) -> None:
    """Signed-cookie sessions, CSRF on the dashboard's forms, and its blueprints."""
    from sla_guard.dashboard import auth, i18n, pages

    settings = of_app(app)
    secret = session_secret(settings)
    app.config["DASHBOARD_ENABLED"] = secret is not None
    if secret:
        app.secret_key = secret
    public = settings.public_url or ""
    app.config.update(
        SESSION_COOKIE_NAME="sla_guard_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public.startswith("https://"),
        SESSION_COOKIE_PATH="/dashboard",
        WTF_CSRF_CHECK_DEFAULT=False,  # only the dashboard's forms: webhooks and the API have their own auth
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    csrf.init_app(app)
    i18n.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
