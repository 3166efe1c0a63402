"""CRM adapters: one module per CRM turning its raw webhook requests into canonical lead events.

Each module exposes ``verify``, ``parse`` and ``enabled`` (see :mod:`.base`); Bitrix24 also
``fetch``, ``derive_events`` and ``snapshot`` for the REST read-back its webhooks need.
"""

from __future__ import annotations

from types import ModuleType

from sla_guard.ingest.adapters import amocrm, bitrix24, hubspot, pipedrive
from sla_guard.ingest.adapters.base import AdapterResult, Lookup, RawRequest, header

ADAPTERS: dict[str, ModuleType] = {
    "amocrm": amocrm,
    "bitrix24": bitrix24,
    "hubspot": hubspot,
    "pipedrive": pipedrive,
}
"""Every CRM adapter by the name used in its webhook path (``/webhooks/<name>``)."""

__all__ = ["ADAPTERS", "AdapterResult", "Lookup", "RawRequest", "header"]
