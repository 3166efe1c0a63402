"""Queries of what sla-guard keeps about CRM records: the look-ups still to read
(``crm_lookups``) and the last state read of each record (``crm_records``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sla_guard.store.models import CrmLookupRow, CrmRecordRow
from sla_guard.store.statements import dialect_insert, first_of_each


def insert_lookups(session: Session, crm: str, lookups: Iterable[Any], received_at: datetime):
    """Store look-ups (:class:`~sla_guard.ingest.adapters.base.Lookup`), once per ``(crm, key)``;
    return ``([(row id, key)] new, [key] repeated)``."""
    firsts, repeated = first_of_each(lookups, lambda lookup: lookup.key)
    rows = [
        {
            "crm": crm,
            "lookup_key": lookup.key,
            "method": lookup.method,
            "record_id": lookup.id,
            "event": lookup.event,
            "sent_at": lookup.ts,
            "received_at": received_at,
            "attempts": 0,
        }
        for lookup in firsts
    ]
    if not rows:
        return [], repeated
    statement = (
        dialect_insert(session, CrmLookupRow)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["crm", "lookup_key"])
        .returning(CrmLookupRow.id, CrmLookupRow.lookup_key)
    )
    stored = {key: row_id for row_id, key in session.execute(statement).all()}
    new = [(stored[row["lookup_key"]], row["lookup_key"]) for row in rows if row["lookup_key"] in stored]
    repeated.extend(row["lookup_key"] for row in rows if row["lookup_key"] not in stored)
    return new, repeated


def lookup_done(session: Session, lookup_id: int, now: datetime) -> None:
    """Mark a look-up read (in the transaction that stores what it found)."""
    session.execute(
        update(CrmLookupRow)
        .where(CrmLookupRow.id == lookup_id)
        .values(done_at=now, last_error=None, claimed_until=None)
    )


def last_known(session: Session, crm: str, kind: str, record_id: str) -> dict | None:
    """The last state read of a record, locked for this transaction on PostgreSQL; ``None`` before
    the first read."""
    statement = select(CrmRecordRow).where(
        CrmRecordRow.crm == crm, CrmRecordRow.kind == kind, CrmRecordRow.record_id == record_id
    )
    if session.bind.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = session.execute(statement).scalar_one_or_none()
    return json.loads(row.data) if row else None


def save_record(session: Session, crm: str, kind: str, record_id: str, state: dict, now: datetime) -> None:
    """Keep ``state`` as the last state read of a record."""
    data = json.dumps(state, ensure_ascii=False)
    session.execute(
        dialect_insert(session, CrmRecordRow)
        .values(crm=crm, kind=kind, record_id=record_id, data=data, updated_at=now)
        .on_conflict_do_update(index_elements=["crm", "kind", "record_id"], set_={"data": data, "updated_at": now})
    )
