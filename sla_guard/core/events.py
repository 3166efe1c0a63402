"""The canonical lead event: the one form every CRM adapter produces.

The shape is the contract of ``POST /webhooks/generic`` (see the README). Pure: no I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from sla_guard.core.bounds import ID_MAX, TEXT_MAX, clean_text, moment_problem, plain_text, web_url
from sla_guard.exceptions import InvalidEvent

EventType = Literal[
    "lead.created",
    "lead.updated",
    "lead.stage_changed",
    "lead.assigned",
    "lead.touched",
    "lead.closed",
]

EVENT_TYPES: tuple[str, ...] = get_args(EventType)
"""Every event type sla-guard understands, in the order a lead usually sees them."""

Id = Annotated[str, Field(min_length=1, max_length=ID_MAX), AfterValidator(plain_text)]
"""An id: 1 to 200 characters, NUL-free (see :mod:`sla_guard.core.bounds`)."""

Text = Annotated[str, Field(max_length=TEXT_MAX), AfterValidator(plain_text)]
"""A name or other free text: at most 1,000 characters, NUL-free."""

Url = Annotated[str, Field(max_length=TEXT_MAX), AfterValidator(plain_text), AfterValidator(web_url)]
"""A link to the lead in the CRM: http or https only."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class Lead(_Strict):
    """What the CRM tells about the lead; only ``id`` is required."""

    id: Id
    name: Text | None = None
    source: Text | None = None
    pipeline: Text | None = None
    stage: Text | None = None
    owner: Text | None = None
    team: Text | None = None
    priority: Text | None = None
    amount: float | None = Field(default=None, allow_inf_nan=False)
    url: Url | None = None
    tags: tuple[Text, ...] | None = Field(default=None, max_length=100)
    customer: Text | None = None
    """The company or contact the lead is for (a CRM id); a customer's lifetime value sums its leads."""

    def fields(self) -> dict[str, Any]:
        """The fields this event actually carries (``None`` means 'not said')."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


class Touch(_Strict):
    """A contact with the client: a call, an e-mail, a message, a meeting, a task done."""

    channel: Annotated[str, Field(min_length=1, max_length=50), AfterValidator(plain_text)] = "other"
    by: Text | None = None
    outcome: Annotated[str, Field(max_length=100), AfterValidator(plain_text)] | None = None
    task_id: Id | None = None
    """The CRM task completed, when the touch is a task done (lets sla-guard know its own tasks)."""


class LeadEvent(_Strict):
    """One thing that happened to a lead, as sla-guard records it."""

    event_id: Id
    """The sender's id of the event: a repeat of it is a duplicate."""
    type: EventType
    occurred_at: AwareDatetime
    """When it happened in the CRM (not when it arrived): events are replayed in this order."""
    lead: Lead
    previous_stage: Text | None = None
    """The stage the lead left (``lead.stage_changed``)."""
    previous_owner: Text | None = None
    """Who had the lead before (``lead.assigned``)."""
    touch: Touch | None = None
    """The contact made (``lead.touched``)."""
    outcome: Literal["won", "lost"] | None = None
    """How the lead was closed (``lead.closed``); none: closed without a verdict."""
    reason: Text | None = None
    """Why it was lost, in the CRM's words (a structured loss, not a bare status)."""

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        """In UTC and within the bounds; the future bound holds when a ``now`` is in the context."""
        problem = moment_problem(value, (info.context or {}).get("now"))
        if problem:
            raise ValueError(problem)
        return value.astimezone(UTC)

    @property
    def lead_id(self) -> str:
        return self.lead.id

    def to_json(self) -> str:
        """The canonical JSON stored in the inbox (only the fields that were given)."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> LeadEvent:
        """An event as the inbox stored it.

        Older versions stored texts longer than today's bounds, and links that are not http(s):
        such an event is read as the bounds now say (a text cut at its limit with bad characters
        replaced, a list cut at its length, the link left out), so that a lead's history never
        fails to replay over it. Anything else a stored event gets wrong still raises."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            data = json.loads(text)
            if not all(_within_bounds(data, error) for error in exc.errors()):
                raise
            return cls.model_validate(data)


_IDS = ("event_id", "id", "task_id")
"""The fields that hold ids (an event's, a lead's, a CRM task's)."""


def _within_bounds(data: Any, error: dict) -> bool:
    """Bring the value an older version stored at ``error["loc"]`` within today's bounds, in
    place; False when the error is of another kind."""
    if not error["loc"] or error["loc"][-1] in _IDS:
        return False  # an id is never cut: two events or leads would become one
    *path, last = error["loc"]
    try:
        for part in path:
            data = data[part]
        value, kind = data[last], error["type"]
    except (KeyError, IndexError, TypeError):  # a field that is missing, not out of bounds
        return False
    if kind in ("string_too_long", "too_long"):
        data[last] = (
            clean_text(value, error["ctx"]["max_length"])
            if isinstance(value, str)
            else value[: error["ctx"]["max_length"]]
        )
    elif kind == "value_error" and last == "url":
        del data[last]
    elif kind == "value_error" and isinstance(value, str) and clean_text(value, len(value)) != value:
        data[last] = clean_text(value, len(value))
    else:
        return False
    return True


def _path(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def parse_events(payload: Any, now: datetime | None = None) -> list[LeadEvent]:
    """Validate a decoded generic webhook body: one event object or a non-empty array of them.

    With ``now`` (the server's), events dated more than a day after it are refused too.

    Raises :class:`InvalidEvent` naming the first offending field, e.g. ``[1].occurred_at``.
    """
    if isinstance(payload, dict):
        items, prefix = [payload], None
    elif isinstance(payload, list):
        if not payload:
            raise InvalidEvent("body", "an array of events must not be empty")
        items, prefix = payload, "[{}]"
    else:
        raise InvalidEvent("body", "expected a JSON object or an array of objects")
    events = []
    for index, item in enumerate(items):
        where = prefix.format(index) if prefix else ""
        if not isinstance(item, dict):
            raise InvalidEvent(where or "body", "expected a JSON object")
        try:
            events.append(LeadEvent.model_validate(item, context={"now": now} if now else None))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            raise InvalidEvent(_path(where, error["loc"]), error["msg"]) from None
    return events
