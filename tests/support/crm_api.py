"""Fixtures for tests of the CRM clients against a local HTTP server standing in for a CRM's
API: every expected request is checked exactly (method, path, headers, query string and the
JSON body with its value types) and answered as the real API answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sla_guard.outbox.crm_tasks import TaskError, TaskRequest

DUE = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
TIMEOUT_S = 2.0
"""How long the CRM clients under test wait for the local stand-in: short enough for the tests of
a CRM that never answers, long enough that a loaded machine never makes an answer late."""
KEY = "sla-guard-fu-42-1"
_ABSENT = object()


def _follow_up(lead_id: str = "1000983", owner: str | None = "17", kind: str = "deal", **changes: Any) -> TaskRequest:
    """A follow-up step as the engine would ask for it."""
    values: dict[str, Any] = {
        "lead_id": lead_id,
        "owner": owner,
        "text": "Follow up on the proposal for ACME",
        "due_at": DUE,
        "idempotency_key": KEY,
        "kind": kind,
    }
    values.update(changes)
    return TaskRequest(**values)


def _canonical(value: Any) -> str:
    """JSON text that tells 1, 1.0, true and "1" apart, for exact body checks."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _expect(
    server: HTTPServer,
    method: str,
    path: str,
    *,
    body: Any = _ABSENT,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
    reply: Any = _ABSENT,
    raw: str | None = None,
    reply_headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    """Expect one request, in order, and answer it.

    ``body`` is compared exactly, value types included; ``headers`` must be present with
    these values; ``query`` must be the whole query string.
    """
    wanted = dict(headers or {})
    if body is not _ABSENT:
        wanted.setdefault("Content-Type", "application/json")
    matcher_kwargs: dict[str, Any] = {"method": method, "headers": wanted or None, "query_string": query}
    if body is not _ABSENT:
        matcher_kwargs["json"] = body

    def respond(request: Request) -> Response:
        if body is not _ABSENT:
            assert _canonical(json.loads(request.get_data(as_text=True))) == _canonical(body)
        payload = raw if raw is not None else ("" if reply is _ABSENT else json.dumps(reply))
        return Response(payload, status=status, headers=dict(reply_headers or {}), content_type=content_type)

    server.expect_ordered_request(path, **matcher_kwargs).respond_with_handler(respond)


def _verify(server: HTTPServer) -> None:
    """Every expected request came, and nothing else did."""
    server.check()
    assert not server.ordered_handlers, f"requests never made: {server.ordered_handlers}"


def _raises_task_error(call: Callable[[], Any]) -> TaskError:
    with pytest.raises(TaskError) as caught:
        call()
    return caught.value


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def _http_answer(status: int, headers: Mapping[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return response


@pytest.fixture
def follow_up():
    """``follow_up(lead_id=…, owner=…, kind=…, **changes)``: a follow-up step as the engine asks for it."""
    return _follow_up


@pytest.fixture
def expect():
    """``expect(server, method, path, body=…, query=…, headers=…, status=…, reply=…)``: the CRM
    stand-in expects one request, in order, checks it exactly and answers it."""
    return _expect


def _unanswered(server: HTTPServer, method: str, path: str, call: Callable[[], Any]) -> TaskError:
    """The :class:`TaskError` ``call`` raises when the CRM takes its one request and does not
    answer in time (it answers once the call has given up)."""
    release = threading.Event()

    def respond(_request: Request) -> Response:
        release.wait(60)
        return Response("{}", status=200, content_type="application/json")

    server.expect_ordered_request(path, method=method).respond_with_handler(respond)
    try:
        return _raises_task_error(call)
    finally:
        release.set()


@pytest.fixture
def unanswered():
    """``unanswered(server, method, path, call)``: the :class:`TaskError` ``call`` raises when
    the CRM takes the request and does not answer in time."""
    return _unanswered


@pytest.fixture
def verify():
    """``verify(server)``: every expected request came, and nothing else did."""
    return _verify


@pytest.fixture
def raises_task_error():
    """``raises_task_error(call)``: the :class:`TaskError` the call raises."""
    return _raises_task_error


@pytest.fixture
def http_answer():
    """``http_answer(status, headers)``: a bare HTTP response, as a CRM would send it."""
    return _http_answer
