"""Stage history, the pure part: every stay of a lead in a stage, from its events.

A stay begins when the lead is seen in a stage (created in it, or moved to it by any event that
names a new stage) and ends when the lead moves on (``moved``, to ``next_stage``) or is closed
(``won``, ``lost`` or ``closed``). A lead reopened by a stage change starts a new stay. Each
stay also carries facts of the lead in its stage that do not depend on any stage order: whether
it is the lead's first stay there, and whether the lead was won or lost from that stage (at this
or another of its stays there); the funnel counts leads per stage by them. The funnel report reads
these rows; the worker recomputes a lead's stays whenever it applies the
lead's events, and a migration fills them in for events stored before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sla_guard.core.events import LeadEvent

LEFT_HOW = ("moved", "won", "lost", "closed")
"""How a stay ended (None while the lead is still in the stage)."""


@dataclass(frozen=True)
class Stay:
    """One stretch of a lead in one stage of its pipeline."""

    seq: int
    """Its place in the lead's history (0, 1, …)."""
    stage: str
    entered_at: datetime
    left_at: datetime | None = None
    """None while the lead is still in the stage."""
    left_how: str | None = None
    """How it ended: one of :data:`LEFT_HOW`."""
    next_stage: str | None = None
    """Where the lead went, when it moved on."""
    first_visit: bool = True
    """This is the lead's first stay in this stage."""
    won_here: bool = False
    """The lead was won from this stage (at this or another of its stays in it)."""
    lost_here: bool = False
    """The lead was lost from this stage (at this or another of its stays in it)."""


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
    return _with_stage_facts(stays)


def _with_stage_facts(stays: list[Stay]) -> list[Stay]:
    first: dict[str, int] = {}
    won: set[str] = set()
    lost: set[str] = set()
    for stay in stays:
        first.setdefault(stay.stage, stay.seq)
        if stay.left_how == "won":
            won.add(stay.stage)
        elif stay.left_how == "lost":
            lost.add(stay.stage)
    return [
        replace(
            stay,
            first_visit=first[stay.stage] == stay.seq,
            won_here=stay.stage in won,
            lost_here=stay.stage in lost,
        )
        for stay in stays
    ]
