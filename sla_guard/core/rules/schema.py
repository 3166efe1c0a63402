"""The rules file's schema: the models each part validates into, and the loaded :class:`RuleSet`.

Pure. Reading a file into a :class:`RuleSet` is :mod:`sla_guard.core.rules.loading`'s.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    field_validator,
    model_validator,
)

from sla_guard.core.rules.durations import parse_duration
from sla_guard.core.rules.notify_spec import DigestSpec, OpsSpec, QuietHours, check_zone

ROLES = ("owner", "manager", "head")
"""Targets of ``notify`` that name a person by their relation to the lead."""

MATCH_FIELDS = ("source", "pipeline", "stage", "priority", "team", "owner", "tags", "amount", "name")
"""Lead fields a rule's ``match`` may test."""

LOG_CHANNEL = "log"
"""The built-in channel that writes the alert to sla-guard's log; always available."""


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


Duration = Annotated[timedelta, PlainValidator(_duration)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EscalationLevel(_Spec):
    """One rung of an escalation ladder: ``after`` the breach, alert ``notify``."""

    after: Duration = timedelta(0)
    notify: tuple[str, ...] = Field(min_length=1)
    reassign: bool = False

    @field_validator("after")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value


class WarnAt(_Spec):
    """When to warn before a deadline: a share of the budget or a time before the deadline."""

    share: float | None = None
    before: timedelta | None = None

    def offset(self, budget: timedelta) -> timedelta | None:
        """Business time from the clock's start to the warning, or None when it makes no sense."""
        if self.share is not None:
            return budget * self.share
        if self.before is not None and self.before < budget:
            return budget - self.before
        return None


def _warn_at(value: Any) -> WarnAt | None:
    if value is None or isinstance(value, WarnAt):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*%\s*", value):
        share = float(value.strip().rstrip("%")) / 100
        if not 0 < share < 1:
            raise ValueError(f'"{value}" must be between 0% and 100%')
        return WarnAt(share=share)
    try:
        return WarnAt(before=parse_duration(value))
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a percentage of the budget (80%) nor a duration before the deadline (10m)"
        ) from None


class ClockRule(_Spec):
    """A deadline: met within ``within`` (business time), warned at ``warn_at``, then escalated."""

    within: Duration
    warn_at: Annotated[WarnAt | None, BeforeValidator(_warn_at)] = None
    escalate: tuple[EscalationLevel, ...] = (EscalationLevel(notify=("owner",)),)

    @field_validator("within")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("escalate")
    @classmethod
    def _ordered(cls, value: tuple[EscalationLevel, ...]) -> tuple[EscalationLevel, ...]:
        if not value:
            raise ValueError("needs at least one level")
        afters = [level.after for level in value]
        if afters != sorted(afters):
            raise ValueError("levels must be in increasing order of `after`")
        return value


class StageRule(_Spec):
    """Maximum time in a stage: ``{max: 2d, notify: [owner, manager]}`` or a full ladder."""

    max: Duration
    warn_at: Annotated[WarnAt | None, BeforeValidator(_warn_at)] = None
    notify: tuple[str, ...] | None = None
    escalate: tuple[EscalationLevel, ...] | None = None

    def as_clock(self) -> ClockRule:
        ladder = self.escalate or (EscalationLevel(notify=self.notify or ("owner",)),)
        return ClockRule(within=self.max, warn_at=self.warn_at, escalate=ladder)


class FollowUpTrigger(_Spec):
    """What starts a cadence: entering a stage, the first touch, or a touch with a given outcome."""

    stage: str | None = None
    first_touch: bool = False
    touch_outcome: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [self.stage is not None, self.first_touch, self.touch_outcome is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of stage, first_touch: true, touch_outcome")
        return self


class FollowUpRule(_Spec):
    """A follow-up cadence: at each ``after`` offset from its trigger a task for the owner is created;
    a task not done within ``grace`` escalates through ``escalate``."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,60}$")
    when: FollowUpTrigger
    after: tuple[Duration, ...] = Field(min_length=1)
    task: str = Field(min_length=1, max_length=2000)
    grace: Duration = parse_duration("1d")
    escalate: tuple[EscalationLevel, ...] = (EscalationLevel(notify=("owner", "manager")),)
    until: tuple[Literal["touch", "stage_change", "close"], ...] = ("stage_change", "close")

    @field_validator("after")
    @classmethod
    def _increasing(cls, value):
        if list(value) != sorted(value) or len(set(value)) != len(value):
            raise ValueError("steps must be in increasing order")
        return value


MatchValue = str | int | float | bool | list[str | int | float] | dict[str, float]


class Rule(_Spec):
    """One SLA rule; the first rule whose ``match`` holds applies to a lead."""

    name: str = Field(min_length=1)
    match: dict[str, MatchValue] = {}
    calendar: str | None = None
    first_touch: ClockRule | None = None
    stages: dict[str, StageRule] = {}
    follow_ups: tuple[FollowUpRule, ...] = ()
    pause_in_stages: tuple[str, ...] = ()


class Channel(_Spec):
    """Where alerts go. ``webhook`` POSTs the alert JSON; ``log`` writes it to the log."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    url: str | None = None
    timeout_s: float = 5.0


class Person(_Spec):
    """A member of the sales team: their manager, team and the channels that reach them.

    ``telegram``, ``slack`` and ``email`` are the person's addresses on channels that do not
    name a destination of their own, ``crm_id`` their user id in the CRM (for ``crm`` tasks);
    ``locale`` overrides the file's; ``quiet_hours`` holds their alerts back at night;
    ``timezone`` is the zone their alerts show times in (the file's ``timezone`` by default).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    manager: str | None = None
    team: str | None = None
    channels: tuple[str, ...] = ()
    locale: Literal["en", "ru"] | None = None
    telegram: str | int | None = None
    slack: str | None = None
    email: str | None = None
    crm_id: str | int | None = None
    quiet_hours: QuietHours | None = None
    timezone: str | None = None

    _zone = field_validator("timezone")(classmethod(lambda cls, v: check_zone(v)))


class Team(_Spec):
    """A sales team: its head (the ``head`` role) and its members."""

    head: str | None = None
    members: tuple[str, ...] = ()


class RulesFile(_Spec):
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'"{value}" is not an IANA time zone (e.g. Europe/Moscow)') from None
        return value

    locale: Literal["en", "ru"] = "en"
    calendars: dict[str, Any] = {}
    channels: dict[str, Channel] = {}
    people: dict[str, Person] = {}
    teams: dict[str, Team] = {}
    on_duty: str | None = None
    ops: OpsSpec = OpsSpec()
    digests: DigestSpec | None = None
    pipelines: dict[str, tuple[str, ...]] = {}
    """Each pipeline's stages in order (the funnel report shows them so)."""

    @field_validator("pipelines")
    @classmethod
    def _stage_lists(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, stages in value.items():
            if not stages:
                raise ValueError(f"pipeline {name!r} lists no stages")
            if any(not stage.strip() for stage in stages):
                raise ValueError(f"pipeline {name!r} has an empty stage name")
            repeated = sorted({stage for stage in stages if stages.count(stage) > 1})
            if repeated:
                raise ValueError(f"pipeline {name!r} lists {', '.join(repeated)} more than once")
        return value

    rules: tuple[Rule, ...] = ()


class RuleSet:
    """A loaded, validated rules file. Immutable; a new version is a new object."""

    def __init__(self, spec: RulesFile, calendars: dict, version: str, text: str):
        self.spec = spec
        self.calendars = calendars
        self.version = version
        self.text = text
        self.rules = spec.rules
        self.channels = spec.channels
        self.people = spec.people
        self.teams = spec.teams
        self.by_name = {rule.name: rule for rule in spec.rules}

    def rule(self, name: str | None) -> Rule | None:
        return self.by_name.get(name) if name else None

    def calendar_for(self, rule: Rule):
        from sla_guard.core.rules.calendar import ALWAYS

        return self.calendars.get(rule.calendar, ALWAYS) if rule.calendar else ALWAYS
