"""Signing in and out of the dashboard: scrypt password hashes, signed-cookie sessions, CSRF
tokens on every form, and a lock after repeated failed sign-ins."""

from __future__ import annotations

import functools
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from sla_guard.dashboard import csrf
from sla_guard.reports import Visibility
from sla_guard.store.db import get_db
from sla_guard.store.insight import record_sign_in, user_by_id, user_by_name

bp = Blueprint("auth", __name__, url_prefix="/dashboard", template_folder="templates")

MAX_FAILURES = 5
"""Failed sign-ins in a row after which the account is locked for :data:`LOCK`."""

LOCK = timedelta(minutes=15)

_DUMMY_HASH = generate_password_hash("sla-guard: no such user", method="scrypt")
"""Checked against when the name is unknown, so a wrong name takes as long as a wrong password."""


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def _now():
    return current_app.extensions["sla_guard.clock"]()


@bp.before_app_request
def _load_user():
    """The signed-in user of a dashboard request, and the CSRF check of every dashboard form."""
    g.user = None
    if not request.path.startswith("/dashboard") or not current_app.config.get("DASHBOARD_ENABLED"):
        return
    if request.method == "POST":
        csrf.protect()
    if request.endpoint == "pages.static":
        return
    user_id = session.get("user_id")
    if user_id is None:
        return
    with get_db(current_app).session() as db:
        user = user_by_id(db, int(user_id))
    if user is None or session.get("pw") != user.password_hash[-12:]:
        session.clear()  # removed, or the password changed since: sign in again
        return
    g.user = user


@bp.before_request
def _protect():
    if not current_app.config.get("DASHBOARD_ENABLED"):
        return render_template("disabled.html"), 503
    return None


def visibility(user) -> Visibility | None:
    """What ``user`` may see: a manager only their team's leads (nothing without a team)."""
    if user.role == "manager":
        return Visibility(teams=frozenset({user.team}) if user.team else frozenset())
    return None


def login_required(view):
    @functools.wraps(view)
    def wrapped(**kwargs):
        if not current_app.config.get("DASHBOARD_ENABLED"):
            return render_template("disabled.html"), 503
        if g.user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(**kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard"):
        return url_for("pages.now")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()[:200]
        password = request.form.get("password") or ""
        now = _now()
        with get_db(current_app).session() as db:
            user = user_by_name(db, name) if name else None
            if user is not None and user.locked_until is not None and user.locked_until > now:
                check_password_hash(_DUMMY_HASH, password)
                error = "locked"
            elif user is not None and check_password_hash(user.password_hash, password):
                record_sign_in(db, user.id, failed=False, locked_until=None)
                session.clear()
                session["user_id"] = user.id
                session["pw"] = user.password_hash[-12:]
                return redirect(_safe_next(request.args.get("next")))
            else:
                if user is None:
                    check_password_hash(_DUMMY_HASH, password)
                else:
                    locked = now + LOCK if user.failed_sign_ins + 1 >= MAX_FAILURES else None
                    record_sign_in(db, user.id, failed=True, locked_until=locked)
                error = "wrong"
        current_app.logger.warning("dashboard sign-in refused", extra={"reason": error})
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
