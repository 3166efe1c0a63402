"""CRM task clients: follow-up steps become real tasks in the CRM, over its REST API.

:func:`client_for` picks the client of a CRM from its settings; each client implements
:class:`~.base.TaskClient` (``create``, ``find``, ``close``, ``status``, and ``assign_owner`` for
a lead sla-guard reassigns) and raises
:class:`~.base.TaskError` with ``transient`` / ``retry_after_s`` for the caller's retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from sla_guard.config import Settings, crm_settings
from sla_guard.exceptions import TaskError, TaskNotFound
from sla_guard.outbox.crm_tasks.amocrm import AmoCrmTasks
from sla_guard.outbox.crm_tasks.base import TaskClient, TaskRequest
from sla_guard.outbox.crm_tasks.bitrix24 import Bitrix24Tasks
from sla_guard.outbox.crm_tasks.hubspot import HubSpotTasks
from sla_guard.outbox.crm_tasks.pipedrive import PipedriveTasks

CLIENTS: dict[str, type] = {
    "amocrm": AmoCrmTasks,
    "bitrix24": Bitrix24Tasks,
    "hubspot": HubSpotTasks,
    "pipedrive": PipedriveTasks,
}
"""Task client class by CRM name (the names of :data:`sla_guard.ingest.adapters.ADAPTERS`)."""


def client_for(crm: str, settings: Settings | Mapping[str, Any], session: requests.Session) -> TaskClient | None:
    """The task client of ``crm``, or ``None`` when its REST settings are absent (or the
    source is not a CRM sla-guard can create tasks in, such as ``generic``).

    ``settings`` is the :class:`~sla_guard.config.Settings`, or a mapping of settings by their full
    ``SLA_GUARD_<CRM>_*`` names (:func:`sla_guard.config.crm_settings` picks the CRM's own).
    """
    client_class = CLIENTS.get(crm.lower())
    if client_class is None:
        return None
    return client_class.from_settings(crm_settings(settings, crm), session)


__all__ = [
    "CLIENTS",
    "AmoCrmTasks",
    "Bitrix24Tasks",
    "HubSpotTasks",
    "PipedriveTasks",
    "TaskClient",
    "TaskError",
    "TaskNotFound",
    "TaskRequest",
    "client_for",
]
