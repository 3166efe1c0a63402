"""Plain helpers for the real CRM payloads kept in ``tests/fixtures/`` (copied there so the suite
runs from any clone): each file holds a request as the CRM sent it and what it ``means``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sla_guard.ingest.adapters.base import RawRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(name: str) -> dict:
    """The fixture file ``name``, parsed."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixtures_of(crm: str) -> list[str]:
    """The names of every fixture of one CRM (``amocrm``, ``bitrix24``, ``hubspot``, ``pipedrive``)."""
    return sorted(path.name for path in FIXTURES.glob(f"{crm}_*.json"))


def raw_request(fixture: dict, *, path: str | None = None, url: str | None = None) -> RawRequest:
    """The fixture's request as an adapter receives it, at ``path`` (default: the fixture's) and
    ``url`` (default: that path on https://sla.example.com)."""
    spec = fixture["request"]
    path = path or spec["path"]
    return RawRequest(
        method=spec["method"],
        path=path,
        url=url or f"https://sla.example.com{path}",
        headers=spec["headers"],
        body=spec["body"].encode(),
        content_type=spec["headers"]["Content-Type"],
    )


def assert_means(events, means: list[dict]) -> None:
    """The events carry what the fixture says it means (the adapter may fill in more fields)."""
    assert [event.type for event in events] == [expected["type"] for expected in means]
    for event, expected in zip(events, means, strict=True):
        actual = event.model_dump(exclude_none=True)
        for key, value in expected.items():
            if key == "occurred_at":
                assert event.occurred_at == datetime.fromisoformat(value)
            elif isinstance(value, dict):
                assert {k: actual[key].get(k) for k in value} == value, key
            else:
                assert actual[key] == value, key
