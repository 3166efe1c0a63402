"""``funnel``: how leads of one pipeline move through its stages, from the stage history.

Stages come in the order of the rules file's ``pipelines:`` list for the pipeline, then any
other stage seen, in first-seen order. Per stage: ``entered`` (leads that were ever in it),
``advanced`` (of those, leads that later entered a later stage, or were won from it),
``conversion`` = advanced / entered, ``lost_here`` (leads lost from it), and nearest-rank
``time_in_stage_p50_s`` / ``p90`` over finished stays. Besides: ``transitions``
(``[{from, to, count}]`` of stage moves), ``backward_moves`` (moves to an earlier stage),
``skipped_stages`` (stages jumped over by forward moves: new -> proposal over qualification
counts 1) and ``bulk_moves`` (stays entered and left by moves within 60 s: stages filled in
after the fact).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.engine import Connection

from sla_guard.reports.query import (
    ReportQuery,
    clamped,
    count_where,
    evaluated_once,
    lead_conditions,
    ratio,
    signed_seconds,
    with_percentiles,
)
from sla_guard.reports.report import Report
from sla_guard.store.models import LeadRow, StageStayRow

NAME = "funnel"
FIELDS = ("entered", "advanced", "conversion", "lost_here", "time_in_stage_p50_s", "time_in_stage_p90_s")
BULK_S = 60
"""A stay entered and left by moves within this many seconds was filled in after the fact."""


def _pipeline(query: ReportQuery, args: Mapping[str, str], rules) -> str | None:
    configured = getattr(getattr(rules, "spec", None), "pipelines", None) or {}
    return query.filters.get("pipeline") or args.get("pipeline") or next(iter(configured), None)


def _index(column, order: list[str]):
    if not order:
        return literal(0)
    return case(*[(column == stage, literal(i)) for i, stage in enumerate(order)], else_=literal(len(order)))


def _moves(connection: Connection, ours, where, stays):
    """One pass over the window's stays per (stage, next stage): when the stage was first entered,
    the moves along that pair, and the bulk moves among them."""
    moved = stays.c.left_how == "moved"
    bulk = and_(stays.c.seq > 0, moved, signed_seconds(stays.c.entered_at, stays.c.left_at) < BULK_S)
    return connection.execute(
        select(
            stays.c.stage,
            stays.c.next_stage,
            func.min(stays.c.entered_at).label("first"),
            count_where(moved).label("moves"),
            count_where(bulk).label("bulk"),
        )
        .select_from(ours)
        .where(*where)
        .group_by(stays.c.stage, stays.c.next_stage)
    ).all()


def _per_stage(connection: Connection, ours, where, stays, order: list[str]) -> dict:
    """Per stage: leads that entered it, advanced from it and were lost in it, and percentiles of
    finished stays -- counted per (lead, stage) by window functions, without DISTINCT."""
    # each stay's position in the order once (a CASE over the stages), then the windows over it
    placed = evaluated_once(
        select(
            stays.c.stage,
            stays.c.lead_id,
            stays.c.seq,
            stays.c.left_how,
            _index(stays.c.stage, order).label("position"),
            # clamped at 0 after the percentile
            case((stays.c.left_at.is_not(None), signed_seconds(stays.c.entered_at, stays.c.left_at))).label("v"),
        )
        .select_from(ours)
        .where(*where)
    )
    # the furthest stage the lead entered after this stay
    furthest_later = func.max(placed.c.position).over(
        partition_by=placed.c.lead_id, order_by=placed.c.seq, rows=(1, None)
    )
    stay = select(placed, furthest_later.label("furthest_later")).subquery()
    advanced = case((or_(stay.c.left_how == "won", stay.c.furthest_later > stay.c.position), 1), else_=0)
    lost = case((stay.c.left_how == "lost", 1), else_=0)
    lead_in_stage = [stay.c.lead_id, stay.c.stage]
    base = select(
        stay.c.stage,
        func.row_number().over(partition_by=lead_in_stage, order_by=stay.c.seq).label("nth"),
        func.max(advanced).over(partition_by=lead_in_stage).label("advanced"),
        func.max(lost).over(partition_by=lead_in_stage).label("lost"),
        stay.c.v,
    ).subquery()
    source, percentiles = with_percentiles(base, ["stage"], {"p50": 50, "p90": 90}, connection.dialect.name)
    first = source.c.nth == 1
    return {
        row.stage: row
        for row in connection.execute(
            select(
                source.c.stage,
                count_where(first).label("entered"),
                count_where(and_(first, source.c.advanced == 1)).label("advanced"),
                count_where(and_(first, source.c.lost == 1)).label("lost_here"),
                *percentiles,
            ).group_by(source.c.stage)
        )
    }


def run(connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    pipeline = _pipeline(query, args, rules)
    if pipeline:
        query = query.narrowed(pipeline=pipeline)
    leads, stays = LeadRow.__table__, StageStayRow.__table__
    ours = stays.join(leads, leads.c.lead_id == stays.c.lead_id)
    where = lead_conditions(query, leads.c)

    configured = list((getattr(getattr(rules, "spec", None), "pipelines", None) or {}).get(pipeline, ()))
    pairs = _moves(connection, ours, where, stays)
    first_seen: dict[str, object] = {}
    for pair in pairs:
        if pair.stage not in first_seen or pair.first < first_seen[pair.stage]:
            first_seen[pair.stage] = pair.first
    others = sorted((stage for stage in first_seen if stage not in configured), key=lambda s: (first_seen[s], s))
    order = configured + others

    per_stage = _per_stage(connection, ours, where, stays, order) if first_seen else {}
    rows = []
    for stage in order:
        row = per_stage.get(stage)
        entered, moved_on = (int(row.entered), int(row.advanced)) if row else (0, 0)
        rows.append(
            {
                "stage": stage,
                "entered": entered,
                "advanced": moved_on,
                "conversion": ratio(moved_on, entered),
                "lost_here": int(row.lost_here) if row else 0,
                "time_in_stage_p50_s": clamped(row.p50) if row else None,
                "time_in_stage_p90_s": clamped(row.p90) if row else None,
            }
        )
    position = {stage: i for i, stage in enumerate(order)}
    transitions = sorted(
        ({"from": p.stage, "to": p.next_stage, "count": int(p.moves)} for p in pairs if p.moves),
        key=lambda t: (-t["count"], position.get(t["from"], len(order)), position.get(t["to"], len(order))),
    )

    def step(t):
        return position.get(t["to"], len(order)) - position.get(t["from"], len(order))

    extra = {
        "transitions": transitions,
        "backward_moves": sum(t["count"] for t in transitions if step(t) < 0),
        "skipped_stages": sum(t["count"] * (step(t) - 1) for t in transitions if step(t) > 1),
        "bulk_moves": sum(int(p.bulk) for p in pairs),
    }
    return Report(NAME, query, ("stage", *FIELDS), rows, meta={"pipeline": pipeline}, extra=extra)


__all__ = ["NAME", "run"]
