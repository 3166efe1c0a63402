"""Writes and look-ups for revenue insight: spend rows and dashboard users."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sla_guard.core.spend import Spend
from sla_guard.store.models import SpendRow, UserRow


def _upsert(session: Session, model):
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(model)


def upsert_spend(session: Session, rows: list[Spend], now: datetime) -> int:
    """Store spend rows, replacing the amount of a (month, source) already stored."""
    if not rows:
        return 0
    statement = _upsert(session, SpendRow).values(
        [{"month": r.month, "source": r.source, "amount": r.amount, "updated_at": now} for r in rows]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["month", "source"],
        set_={"amount": statement.excluded.amount, "updated_at": statement.excluded.updated_at},
    )
    session.execute(statement)
    return len(rows)


def user_by_name(session: Session, name: str) -> UserRow | None:
    return session.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()


def user_by_id(session: Session, user_id: int) -> UserRow | None:
    return session.get(UserRow, user_id)


def save_user(session: Session, name: str, password_hash: str, role: str, team: str | None, locale: str, now):
    """Create the user, or replace the password, role, team and locale of one with that name."""
    statement = _upsert(session, UserRow).values(
        name=name, password_hash=password_hash, role=role, team=team, locale=locale, created_at=now, failed_sign_ins=0
    )
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "password_hash": password_hash,
            "role": role,
            "team": team,
            "locale": locale,
            "failed_sign_ins": 0,
            "locked_until": None,
        },
    )
    session.execute(statement)


def record_sign_in(session: Session, user_id: int, failed: bool, locked_until: datetime | None) -> None:
    values = (
        {"failed_sign_ins": UserRow.failed_sign_ins + 1, "locked_until": locked_until}
        if failed
        else {"failed_sign_ins": 0, "locked_until": None}
    )
    session.execute(update(UserRow).where(UserRow.id == user_id).values(**values))
