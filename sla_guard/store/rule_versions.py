"""Queries on the versions of the rules file: each version loaded is kept (its hash and text),
and the leads whose running clocks were computed under another version are found again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sla_guard.store.models import ClockRow, RuleVersionRow
from sla_guard.store.statements import dialect_insert


def record_rule_version(session: Session, version: str, text: str, now: datetime) -> bool:
    """Remember a loaded rules version (its hash and file text); True when it was new."""
    result = session.execute(
        dialect_insert(session, RuleVersionRow)
        .values(version=version, loaded_at=now, text=text)
        .on_conflict_do_nothing(index_elements=["version"])
    )
    return bool(result.rowcount)


def rule_versions(session: Session, limit: int = 50) -> list[tuple[str, datetime]]:
    """The rules versions loaded so far, newest first: ``(version, loaded_at)``."""
    return list(
        session.execute(
            select(RuleVersionRow.version, RuleVersionRow.loaded_at)
            .order_by(RuleVersionRow.loaded_at.desc())
            .limit(limit)
        ).all()
    )


def leads_on_other_rules(session: Session, version: str, limit: int = 100_000) -> list[str]:
    """Leads with a running clock computed under another rules version than ``version``."""
    return list(
        session.execute(
            select(ClockRow.lead_id)
            .where(
                ClockRow.stopped_at.is_(None), or_(ClockRow.rule_version.is_(None), ClockRow.rule_version != version)
            )
            .group_by(ClockRow.lead_id)
            .limit(limit)
        ).scalars()
    )
