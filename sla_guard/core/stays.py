"""Stage history, the pure part: every stay of a lead in a stage, from its events.

A stay begins when the lead is seen in a stage (created in it, or moved to it by any event that
names a new stage) and ends when the lead moves on (``moved``, to ``next_stage``) or is closed
(``won``, ``lost`` or ``closed``). A lead reopened by a stage change starts a new stay. The
funnel report reads these rows; the worker recomputes a lead's stays whenever it applies the
lead's events, and a migration fills them in for events stored before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sla_guard.core.events import LeadEvent

LEFT_HOW = ("moved", "won", "lost", "closed")
"""How a stay ended (None while the lead is still in the stage)."""


@dataclass(frozen=True)
class Stay:
    seq: int
    stage: str
    entered_at: datetime
    left_at: datetime | None = None
    left_how: str | None = None
    next_stage: str | None = None


def stage_stays(events: list[LeadEvent]) -> list[Stay]:
    """The stays of one lead; ``events`` sorted by ``occurred_at`` (ties by arrival)."""
    stays: list[Stay] = []
    current: Stay | None = None
    closed = False

    def leave(at: datetime, how: str, next_stage: str | None = None) -> None:
        nonlocal current
        if current is not None:
            stays.append(
                Stay(current.seq, current.stage, current.entered_at, max(at, current.entered_at), how, next_stage)
            )
            current = None

    last_stage: str | None = None
    for event in events:
        if event.type == "lead.closed":
            if not closed:
                leave(event.occurred_at, event.outcome or "closed")
                closed = True
            continue
        stage = event.lead.stage
        if not stage or (stage == last_stage and not closed):
            continue
        if closed and event.type not in ("lead.stage_changed", "lead.created"):
            continue  # a closed lead's updates do not reopen it; only a stage change does
        leave(event.occurred_at, "moved", stage)
        current = Stay(len(stays), stage, event.occurred_at)
        last_stage, closed = stage, False
    if current is not None:
        stays.append(current)
    return stays
