"""lead ids carry their source

Revision ID: 0008_lead_ids_with_source
Revises: 0007_quarantined_leads

Every lead that came from a CRM gets the id ``<crm>:<entity>:<the CRM's id>`` (see
``sla_guard.core.record_ids``) in every table holding a ``lead_id``. The CRM is the source of
the lead's first CRM event; the entity is read from what the events say:

- amoCRM: always ``lead``;
- Bitrix24: the event ids (``bitrix24-lead-5-…``, ``bitrix24-deal-5-…``). A lead 5 and a
  deal 5 that were merged into one lead are split again: each event moves to its own record,
  and both are applied anew by the reconciler;
- Pipedrive: a UUID is a ``lead``, a number a ``deal``;
- HubSpot: the record URL the events carry (``/record/0-3/`` a deal, ``0-1`` a contact,
  ``0-136`` a lead), else ``SLA_GUARD_HUBSPOT_TASK_OBJECT`` as the old versions read it.

Pending outbox items (reassignments, loss-reason reads) follow their lead. Leads of the generic
webhook keep their ids. Downgrading leaves the ids as they are.
"""

from __future__ import annotations

import json
import os
import re

import sqlalchemy as sa
from alembic import op

revision = "0008_lead_ids_with_source"
down_revision = "0007_quarantined_leads"
branch_labels = None
depends_on = None

CRMS = ("amocrm", "bitrix24", "hubspot", "pipedrive")
_BITRIX = re.compile(r"^bitrix24-(lead|deal)-(\d+)-")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HUBSPOT_TYPES = {"0-3": "deal", "0-1": "contact", "0-136": "lead"}
_MAX = 200


def _entity(crm: str, old: str, events: list[tuple[str, str]]) -> str | None:
    if crm == "amocrm":
        return "lead"
    if crm == "pipedrive":
        return "lead" if _UUID.match(old) else "deal" if old.isdigit() else None
    if crm == "bitrix24":
        for event_id, _ in events:
            match = _BITRIX.match(event_id)
            if match and match.group(2) == old:
                return match.group(1)
        return "lead" if (os.environ.get("SLA_GUARD_BITRIX24_TASK_OBJECT") or "deal") == "lead" else "deal"
    for _, payload in events:  # hubspot
        try:
            url = (json.loads(payload).get("lead") or {}).get("url") or ""
        except (TypeError, ValueError):
            continue
        match = re.search(r"/record/(0-\d+)/", url)
        if match and match.group(1) in _HUBSPOT_TYPES:
            return _HUBSPOT_TYPES[match.group(1)]
    return "contact" if (os.environ.get("SLA_GUARD_HUBSPOT_TASK_OBJECT") or "deal") == "lead" else "deal"


def upgrade() -> None:
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id"),
        sa.column("source"),
        sa.column("event_id"),
        sa.column("lead_id"),
        sa.column("payload"),
        sa.column("processed_at"),
    )
    rows = bind.execute(
        sa.select(events.c.lead_id, events.c.source, events.c.event_id, events.c.payload).order_by(events.c.id)
    ).all()
    first_crm: dict[str, str] = {}
    sources: dict[str, set[str]] = {}
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for lead_id, source, event_id, payload in rows:
        sources.setdefault(lead_id, set()).add(source)
        if source in CRMS:
            first_crm.setdefault(lead_id, source)
            by_pair.setdefault((lead_id, source), []).append((event_id, payload))
    renames: dict[tuple[str, str], str] = {}
    for (old, crm), seen in by_pair.items():
        if old.split(":", 1)[0] in CRMS and old.count(":") >= 2:
            continue  # already carries its source
        entity = _entity(crm, old, seen)
        new = f"{crm}:{entity}:{old}" if entity else None
        if new and len(new) <= _MAX:
            renames[(old, crm)] = new
    existing = {row[0] for row in bind.execute(sa.text("SELECT lead_id FROM leads"))}
    renames = {pair: new for pair, new in renames.items() if new not in existing}
    mapping = {old: new for (old, crm), new in renames.items() if first_crm.get(old) == crm}
    if mapping:
        _rename(bind, mapping)
    statement = (
        sa.update(events)
        .where(events.c.source == sa.bindparam("crm"), events.c.lead_id == sa.bindparam("old"))
        .values(lead_id=sa.bindparam("new"))
    )
    items = [{"crm": crm, "old": old, "new": new} for (old, crm), new in renames.items()]
    if items:
        bind.execute(statement, items)
    # a bare id several sources shared: each source's events go to their own lead, applied anew
    shared = [old for old, seen in sources.items() if len(seen) > 1 and old in mapping]
    again = {lead for old in shared for lead in [old, *(new for (o, _), new in renames.items() if o == old)]}
    _split_bitrix24(bind, events, again)


def _rename(bind, mapping: dict[str, str]) -> None:
    inspector = sa.inspect(bind)
    op.create_table(
        "lead_id_renames", sa.Column("old", sa.String(200), primary_key=True), sa.Column("new", sa.String(200))
    )
    renames = sa.table("lead_id_renames", sa.column("old"), sa.column("new"))
    items = [{"old": old, "new": new} for old, new in mapping.items()]
    for start in range(0, len(items), 1000):
        bind.execute(renames.insert(), items[start : start + 1000])
    lead_columns = [column["name"] for column in inspector.get_columns("leads")]
    others = ", ".join(f'l."{name}"' for name in lead_columns if name != "lead_id")
    names = ", ".join(f'"{name}"' for name in lead_columns if name != "lead_id")
    bind.execute(
        sa.text(
            f'INSERT INTO leads (lead_id, {names}) SELECT r.new, {others} FROM leads l JOIN lead_id_renames r ON l.lead_id = r.old'
        )
    )
    for table in inspector.get_table_names():
        if table in ("leads", "events", "lead_id_renames"):
            continue
        if "lead_id" in {column["name"] for column in inspector.get_columns(table)}:
            bind.execute(
                sa.text(
                    f"UPDATE {table} SET lead_id = (SELECT r.new FROM lead_id_renames r WHERE r.old = {table}.lead_id) "
                    f"WHERE lead_id IN (SELECT old FROM lead_id_renames)"
                )
            )
    bind.execute(sa.text("DELETE FROM leads WHERE lead_id IN (SELECT old FROM lead_id_renames)"))
    op.drop_table("lead_id_renames")
    if "outbox_items" in inspector.get_table_names():  # pending reassignments and loss-reason reads
        items = sa.table("outbox_items", sa.column("id"), sa.column("args"))
        for item_id, args in bind.execute(sa.select(items.c.id, items.c.args)).all():
            try:
                values = json.loads(args)
            except (TypeError, ValueError):
                continue
            if isinstance(values, dict) and values.get("lead_id") in mapping:
                values["lead_id"] = mapping[values["lead_id"]]
                bind.execute(sa.update(items).where(items.c.id == item_id).values(args=json.dumps(values)))


def _split_bitrix24(bind, events, touched: set[str]) -> None:
    """Move each Bitrix24 lead/deal event to its own record; mark the events of every lead in
    ``touched`` and of both records split apart unprocessed, so they are applied again."""
    rows = bind.execute(
        sa.select(events.c.id, events.c.event_id, events.c.lead_id).where(events.c.source == "bitrix24")
    ).all()
    for row_id, event_id, lead_id in rows:
        match = _BITRIX.match(event_id)
        if match is None:
            continue
        wanted = f"bitrix24:{match.group(1)}:{match.group(2)}"
        if lead_id != wanted:
            bind.execute(sa.update(events).where(events.c.id == row_id).values(lead_id=wanted, processed_at=None))
            touched.update((lead_id, wanted))
    for lead_id in touched:
        bind.execute(sa.update(events).where(events.c.lead_id == lead_id).values(processed_at=None))


def downgrade() -> None:
    pass
