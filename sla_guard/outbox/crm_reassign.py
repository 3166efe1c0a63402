"""Tell the lead's CRM who its new owner is after an escalation reassigned it.

An escalation level with ``reassign: true`` hands the lead to the next member of the owner's
team inside sla-guard (a ``lead.assigned`` event of its own, and ``reassigned_to`` on the
escalation). This module makes the same change in the CRM the lead came from, over the
``assign_owner`` call of its task client (:mod:`sla_guard.outbox.crm_tasks`):

- the CRM and the record are read from the lead id (``bitrix24:deal:5``, see
  :mod:`sla_guard.core.record_ids`): a lead whose id names no CRM record (a bare generic id)
  or whose CRM has no REST settings is left alone: ``not_supported``;
- a transient failure (429, 5xx, a timeout) is retried, at the backoff or the CRM's
  ``Retry-After`` if longer, up to ``SLA_GUARD_ALERT_MAX_ATTEMPTS``;
- a permanent one (refused credentials, invalid data, a deleted record) is logged at ERROR and
  raises an ops alert.

The push is an outbox item (:class:`Reassignments`), recorded in the transaction that reassigns
the lead, so a crash or a Redis flush before it is made loses nothing.

Every outcome is logged with ``lead_id``, ``escalation_id`` and ``crm_status`` (``assigned``,
``retrying``, ``failed``, ``superseded``, ``not_supported``). Setting an owner the record
already has is harmless, so a repeated attempt needs no look-up first; an attempt made after
the lead changed hands again (a later reassignment, or a person in the CRM) is skipped, so a
late retry never takes the lead back from its newer owner.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy.orm import Session

from sla_guard import runtime as runtime_module
from sla_guard.core.record_ids import crm_record
from sla_guard.outbox.base import ItemKind
from sla_guard.outbox.crm_tasks import client_for
from sla_guard.outbox.delivery import OPS_ALERTS
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.leads import lead_owner

log = logging.getLogger("sla_guard.outbox.crm_reassign")


def crm_user(runtime: Runtime, owner: str) -> str:
    """The CRM user id of an owner: the person's ``crm_id`` in the rules file, else the name
    itself (CRM adapters report owners by their CRM user id)."""
    person = runtime.rules.current().people.get(owner)
    crm_id = getattr(person, "crm_id", None)
    return str(crm_id).strip() if crm_id is not None and str(crm_id).strip() else owner


def _current_owner(runtime: Runtime, lead_id: str) -> str | None:
    """The lead's owner now."""
    with runtime.db.session() as session:
        return lead_owner(session, lead_id)


class Reassignments(ItemKind):
    """A reassignment pushed to the lead's CRM: one item per escalation that reassigned."""

    name = "reassign"
    what = "reassignment pushed to the CRM"
    outcome_field = "crm_status"
    retrying = "retrying"
    gave_up = "failed"

    def record(self, session: Session, lead_id: str, new_owner: str, escalation_id: int, now: datetime) -> int:
        """Record the push (in the transaction that reassigns); its item id."""
        args = {"lead_id": lead_id, "owner": new_owner, "escalation_id": escalation_id}
        return self.ensure(session, str(escalation_id), args, now)

    def attempt(self, runtime: Runtime, row) -> str:
        args = json.loads(row.args)
        lead_id, new_owner = args["lead_id"], args["owner"]
        record = crm_record(lead_id)
        crm, owner_now = (record.crm if record else None), _current_owner(runtime, lead_id)
        context = {**self.context(row), "crm": crm}
        client = client_for(record.crm, runtime.settings, runtime.http()) if record else None
        if client is None:
            outcome = "not_supported"
            _outcome(
                logging.INFO, "reassignment not sent: the lead's source has no CRM API configured", context, outcome
            )
        elif owner_now is not None and owner_now != new_owner:
            outcome = "superseded"
            _outcome(
                logging.INFO,
                "reassignment not sent: the lead has another owner since",
                context,
                outcome,
                owner_now=owner_now,
            )
        else:
            kind = record.entity
            client.assign_owner(record.id, crm_user(runtime, new_owner), kind)
            outcome = "assigned"
            _outcome(logging.INFO, "reassignment sent to the CRM", context, outcome, kind=kind)
        self.done(runtime, row.id, outcome)
        return outcome

    def on_retry(self, runtime: Runtime, row, error: str, wait: float, context: dict) -> None:
        message = "reassignment not accepted by the CRM yet, will retry"
        _outcome(logging.WARNING, message, context, self.retrying, error=error, retry_in_s=wait)

    def on_give_up(self, runtime: Runtime, row, error: str, context: dict) -> None:
        _outcome(logging.ERROR, "reassignment refused by the CRM", context, self.gave_up, error=error)
        self.raise_ops_alert(runtime, row, error)


def _outcome(level: int, message: str, context: dict, crm_status: str, **fields) -> str:
    log.log(level, message, extra={**context, "crm_status": crm_status, **fields})
    return crm_status


@job()
def reassign_in_crm(item_id: int) -> str:
    """Job: one attempt at telling the lead's CRM of a reassignment."""
    return REASSIGNMENTS.run(runtime_module.current(), item_id)


REASSIGNMENTS = Reassignments(reassign_in_crm, ops=OPS_ALERTS)


def item_of(runtime: Runtime, lead_id: str, new_owner: str, escalation_id: int) -> int:
    """The outbox item of an escalation's reassignment (recorded now if it was not)."""
    with runtime.db.session() as session:
        return REASSIGNMENTS.record(session, lead_id, new_owner, escalation_id, runtime.now())


def tell_crm(runtime: Runtime, lead_id: str, new_owner: str, escalation_id: int) -> str:
    """Make ``new_owner`` the lead's owner in its CRM now; return the ``crm_status`` (the one
    recorded before when the push was done already)."""
    item_id = item_of(runtime, lead_id, new_owner, escalation_id)
    status = REASSIGNMENTS.run(runtime, item_id)
    return REASSIGNMENTS.outcome_of(runtime, item_id) if status == REASSIGNMENTS.not_claimed else status
