"""Lead ids that carry their source: ``<crm>:<entity>:<the CRM's own id>``.

Two CRMs feeding one install number their records independently (amoCRM lead 5, Bitrix24
deal 5, Pipedrive deal 5), and one CRM may number two kinds of record independently too
(Bitrix24's lead 5 and deal 5 are different records). So every CRM adapter names a lead
``bitrix24:deal:5``, ``bitrix24:lead:5``, ``amocrm:lead:5``, ``pipedrive:lead:<uuid>``,
``hubspot:contact:5``. The id alone then says, from end to end (API, alerts, follow-up tasks,
reassignment), which record of which CRM a lead is, and nothing needs guessing later.

The generic webhook keeps its ids exactly as sent: a sender may use bare ids (``L-1001``), or
name a CRM record in this form to report about it (a HubSpot workflow posting
``hubspot:deal:42``), which then lands on the same lead as the CRM's own webhooks. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTITIES: dict[str, tuple[str, ...]] = {
    "amocrm": ("lead",),
    "bitrix24": ("lead", "deal"),
    "hubspot": ("contact", "deal", "lead"),
    "pipedrive": ("deal", "lead"),
}
"""The kinds of record each CRM's leads can be."""


@dataclass(frozen=True)
class CrmRecord:
    """One record of one CRM: ``crm`` (``bitrix24``), ``entity`` (``deal``), ``id`` (``5``)."""

    crm: str
    entity: str
    id: str

    @property
    def lead_id(self) -> str:
        return f"{self.crm}:{self.entity}:{self.id}"


def lead_id(crm: str, entity: str, native_id: str) -> str:
    """The sla-guard lead id of a CRM record."""
    if entity not in ENTITIES.get(crm, ()):
        raise ValueError(f"{crm} has no records of kind {entity!r}")
    return CrmRecord(crm, entity, str(native_id).strip()).lead_id


def crm_record(lead_id: str) -> CrmRecord | None:
    """The CRM record a lead id names, or ``None`` for an id of no CRM (a bare generic id)."""
    crm, _, rest = str(lead_id).partition(":")
    entity, _, native = rest.partition(":")
    if entity in ENTITIES.get(crm, ()) and native.strip():
        return CrmRecord(crm, entity, native)
    return None


def crm_of(lead_id: str) -> str | None:
    """The CRM whose record the lead is, as its id says (``None`` for a bare generic id)."""
    record = crm_record(lead_id)
    return record.crm if record else None
