"""The canonical lead event: the one form every CRM adapter produces.

The shape is the contract of ``POST /webhooks/generic`` (see the README). Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from sla_guard.exceptions import InvalidEvent

EVENT_TYPES = (
    "lead.created",
    "lead.updated",
    "lead.stage_changed",
    "lead.assigned",
    "lead.touched",
    "lead.closed",
)
"""Every event type sla-guard understands, in the order a lead usually sees them."""

EventType = Literal[
    "lead.created",
    "lead.updated",
    "lead.stage_changed",
    "lead.assigned",
    "lead.touched",
    "lead.closed",
]

_ID = Field(min_length=1, max_length=200)
_TEXT = Field(default=None, max_length=2000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class Lead(_Strict):
    """What the CRM tells about the lead; only ``id`` is required."""

    id: str = _ID
    name: str | None = _TEXT
    source: str | None = _TEXT
    pipeline: str | None = _TEXT
    stage: str | None = _TEXT
    owner: str | None = _TEXT
    team: str | None = _TEXT
    priority: str | None = _TEXT
    amount: float | None = None
    url: str | None = _TEXT
    tags: tuple[str, ...] | None = None
    customer: str | None = _TEXT
    """The company or contact the lead is for (a CRM id); a customer's lifetime value sums its leads."""

    def fields(self) -> dict[str, Any]:
        """The fields this event actually carries (``None`` means 'not said')."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


class Touch(_Strict):
    """A contact with the client: a call, an e-mail, a message, a meeting, a task done."""

    channel: str = Field(default="other", min_length=1, max_length=50)
    by: str | None = _TEXT
    outcome: str | None = Field(default=None, max_length=100)
    task_id: str | None = Field(default=None, max_length=200)
    """The CRM task completed, when the touch is a task done (lets sla-guard know its own tasks)."""


class LeadEvent(_Strict):
    """One thing that happened to a lead, as sla-guard records it."""

    event_id: str = _ID
    type: EventType
    occurred_at: AwareDatetime
    lead: Lead
    previous_stage: str | None = _TEXT
    previous_owner: str | None = _TEXT
    touch: Touch | None = None
    outcome: Literal["won", "lost"] | None = None
    reason: str | None = _TEXT

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def lead_id(self) -> str:
        return self.lead.id

    def to_json(self) -> str:
        """The canonical JSON stored in the inbox (only the fields that were given)."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> LeadEvent:
        return cls.model_validate_json(text)


def _path(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def parse_events(payload: Any) -> list[LeadEvent]:
    """Validate a decoded generic webhook body: one event object or a non-empty array of them.

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
            events.append(LeadEvent.model_validate(item))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            raise InvalidEvent(_path(where, error["loc"]), error["msg"]) from None
    return events
