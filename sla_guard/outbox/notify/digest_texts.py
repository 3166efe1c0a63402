"""Digests, the pure part: when they are due, who gets them, the numbers and the texts.

The daily digest goes to every manager (a person some other person names as ``manager``, or
a team's ``head``) and lists their people's overdue leads. The weekly summary gives each
manager their people's first-touch compliance over the last seven days, and gives the
``digests.weekly_notify`` channels the same for everybody. Times are local, in
``digests.timezone`` or the rules file's ``timezone``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sla_guard.core.clocks import FOLLOW_UP_PREFIX, STAGE_PREFIX
from sla_guard.core.rules.notify_spec import WEEKDAYS, DigestSpec
from sla_guard.core.rules.schema import RuleSet
from sla_guard.outbox.notify.messages import lead_label, texts
from sla_guard.outbox.notify.spoken import spoken_duration

DAILY_GRACE = timedelta(hours=12)
"""A daily digest not sent within this long after its time (the workers were down) is skipped."""

WEEKLY_GRACE = timedelta(days=1)
"""The same for the weekly summary."""

MAX_LINES = 30
"""Overdue leads listed in one daily digest; the rest are counted."""


@dataclass(frozen=True)
class Period:
    """One sending of a digest: ``key`` is the local date it is for, ``at`` its time (UTC)."""

    kind: str
    key: str
    at: datetime
    start: datetime


def _latest(
    local_time: time, zone: ZoneInfo, now: datetime, weekday: int | None = None
) -> tuple[datetime, date] | None:
    today = now.astimezone(zone).date()
    for back in range(8):
        day = today - timedelta(days=back)
        if weekday is not None and day.weekday() != weekday:
            continue
        at = datetime.combine(day, local_time, tzinfo=zone).astimezone(UTC)
        if at <= now:
            return at, day
    return None


def due_periods(spec: DigestSpec | None, default_zone: str, now: datetime) -> list[Period]:
    """The digests whose time has come at ``now`` and is not yet too long past."""
    if spec is None:
        return []
    zone = ZoneInfo(spec.timezone or default_zone)
    out = []
    if spec.daily_at is not None:
        latest = _latest(spec.daily_at, zone, now)
        if latest and now - latest[0] < DAILY_GRACE:
            out.append(Period("daily", latest[1].isoformat(), latest[0], latest[0] - timedelta(days=1)))
    if spec.weekly_on is not None:
        latest = _latest(spec.weekly_time, zone, now, WEEKDAYS.index(spec.weekly_on))
        if latest and now - latest[0] < WEEKLY_GRACE:
            out.append(Period("weekly", latest[1].isoformat(), latest[0], latest[0] - timedelta(days=7)))
    return out


@dataclass(frozen=True)
class Scope:
    """Whose leads a manager oversees: their direct reports, and the teams they head."""

    people: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    def covers(self, owner: str | None, team: str | None) -> bool:
        return (owner is not None and owner in self.people) or (team is not None and team in self.teams)


def managers(rules: RuleSet) -> dict[str, Scope]:
    """Every manager and team head with the people and teams they oversee."""
    people: dict[str, set[str]] = {}
    teams: dict[str, set[str]] = {}
    for name, person in rules.people.items():
        if person.manager:
            people.setdefault(person.manager, set()).add(name)
    for team_name, team in rules.teams.items():
        if team.head:
            members = set(team.members) | {name for name, p in rules.people.items() if p.team == team_name}
            people.setdefault(team.head, set()).update(members - {team.head})
            teams.setdefault(team.head, set()).add(team_name)
    return {
        name: Scope(frozenset(people.get(name, ())), frozenset(teams.get(name, ())))
        for name in sorted(set(people) | set(teams))
    }


@dataclass(frozen=True)
class Overdue:
    """An open clock past its deadline, with its lead's fields."""

    lead: dict
    clock: str
    rule: str
    due_at: datetime


def clock_label(clock: str, locale: str) -> str:
    """A clock's name as readers say it: "first touch", "stage proposal", "follow-up"."""
    digest = texts(locale)["digest"]
    if clock.startswith(STAGE_PREFIX):
        return digest["clock_stage"].format(stage=clock[len(STAGE_PREFIX) :])
    if clock.startswith(FOLLOW_UP_PREFIX):
        return digest["clock_follow_up"]
    return digest["clock_first_touch"]


def daily_text(items: list[Overdue], locale: str, day: str, now: datetime) -> str:
    """The daily digest's text: a title, then one line per overdue clock, oldest deadline first."""
    digest = texts(locale)["digest"]
    if not items:
        return digest["daily_none"].format(date=day)
    lines = [digest["daily_title"].format(date=day, count=len(items))]
    for item in sorted(items, key=lambda entry: entry.due_at)[:MAX_LINES]:
        lines.append(
            digest["daily_line"].format(
                lead=lead_label(item.lead),
                source=digest["source"].format(source=item.lead["source"]) if item.lead.get("source") else "",
                owner=item.lead.get("owner") or texts(locale)["nobody"],
                clock=clock_label(item.clock, locale),
                rule=item.rule,
                late=spoken_duration(now - item.due_at, locale),
            )
        )
        if item.lead.get("url"):
            lines[-1] += f" {item.lead['url']}"
    if len(items) > MAX_LINES:
        lines.append(digest["more"].format(count=len(items) - MAX_LINES))
    return "\n".join(lines)


@dataclass
class Summary:
    """The weekly numbers of one scope. First-touch counts come from the ``sla`` report (the one
    definition the API and the dashboard show): ``total`` = met + missed + overdue."""

    total: int = 0
    met: int = 0
    compliance: float | None = None
    first_touch_p50_s: float | None = None
    escalations: int = 0
    overdue_now: int = 0
    by_owner: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "clocks": self.total,
            "met": self.met,
            "compliance": self.compliance,
            "first_touch_median_s": self.first_touch_p50_s,
            "escalations": self.escalations,
            "overdue_now": self.overdue_now,
            "by_owner": {owner: {"met": met, "clocks": total} for owner, (met, total) in sorted(self.by_owner.items())},
        }


def _decided(row: dict) -> int:
    return row["met"] + row["missed"] + row["overdue"]


def summarize(
    sla_total: dict | None,
    sla_by_owner: list[dict],
    escalations: list[tuple[str | None, str | None]],
    overdue_now: list[tuple[str | None, str | None]],
    scope: Scope | None,
) -> Summary:
    """A scope's summary from its ``sla`` report rows (already narrowed to ``scope``) and the
    (owner, team) of escalations and overdue clocks, counted here when inside ``scope``."""

    def inside(owner, team):
        return scope is None or scope.covers(owner, team)

    summary = Summary()
    if sla_total is not None:
        summary.total, summary.met = _decided(sla_total), sla_total["met"]
        summary.compliance, summary.first_touch_p50_s = sla_total["compliance"], sla_total["first_touch_p50_s"]
    for row in sla_by_owner:
        if _decided(row):
            summary.by_owner[row["owner"] or "—"] = [row["met"], _decided(row)]
    summary.escalations = sum(1 for owner, team in escalations if inside(owner, team))
    summary.overdue_now = sum(1 for owner, team in overdue_now if inside(owner, team))
    return summary


def weekly_text(summary: Summary, locale: str, period: Period, zone: str, team_scope: bool) -> str:
    digest = texts(locale)["digest"]
    local = ZoneInfo(zone)
    start = period.start.astimezone(local).date().isoformat()
    end = (period.at.astimezone(local) - timedelta(seconds=1)).date().isoformat()
    lines = [digest["weekly_title"].format(start=start, end=end)]
    scope = digest["weekly_scope_team" if team_scope else "weekly_scope_all"]
    if not summary.total:
        lines.append(f"{scope}: {digest['no_data']}")
    else:
        p50 = summary.first_touch_p50_s
        median = spoken_duration(p50, locale) if p50 is not None else "—"
        lines.append(
            digest["weekly_line"].format(
                scope=scope,
                met=summary.met,
                total=summary.total,
                share=f"{100 * summary.met / summary.total:.0f}%",
                median=median,
                escalations=summary.escalations,
                overdue=summary.overdue_now,
            )
        )
        for owner, (met, total) in sorted(summary.by_owner.items()):
            lines.append(digest["weekly_owner"].format(owner=owner, met=met, total=total))
    return "\n".join(lines)


def subject_of(text: str) -> str:
    return text.split("\n", 1)[0][:150]
