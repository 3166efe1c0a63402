"""Promise: no input, authenticated or not, yields a 5xx or a half-stored request.

Hypothesis mutates correctly signed bodies of every webhook endpoint (a field replaced by any
JSON value, odd dates, NULs, deep nesting, raw bytes), sends odd headers and odd API queries.
Every answer is below 500; a 202 stored exactly the ids it acknowledged, anything else stored
nothing. Runs on SQLite and PostgreSQL with a bounded number of examples per endpoint.
"""

from __future__ import annotations

import json
from base64 import b64encode
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from sla_guard.store.models import CrmLookupRow, EventRow
from tests.support.crm_payloads import load
from tests.support.crm_requests import AMO_TOKEN, B24_APP_TOKEN, PIPEDRIVE_PASSWORD, PIPEDRIVE_USER, hubspot_signed

EXAMPLES = hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
odd_text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "<", "&", "\r", "\n"]))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
    | st.text(min_size=190, max_size=1100)
    | moments.map(lambda moment: moment.isoformat())
    | st.integers(min_value=-(2**40), max_value=2**45)  # unix seconds and milliseconds, in and out of range
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3),
    max_leaves=8,
)


def paths(node, prefix=()):
    """Every path into a JSON document, the root included."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


def replaced(document, path, value):
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy


@st.composite
def mutated_json(draw, document):
    """``document`` with one or two nodes replaced by any JSON value, or raw bytes now and then."""
    kind = draw(st.integers(min_value=0, max_value=9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        depth = draw(st.integers(min_value=60, max_value=5000))
        return b"[" * depth + b"]" * depth
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        all_paths = list(paths(document))
        document = replaced(document, draw(st.sampled_from(all_paths)), draw(json_values))
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def counts(app) -> tuple[int, int]:
    with app.extensions["sla_guard.db"].session() as session:
        events = session.execute(select(func.count()).select_from(EventRow)).scalar()
        lookups = session.execute(select(func.count()).select_from(CrmLookupRow)).scalar()
    return events, lookups


def event_ids(app) -> set[str]:
    with app.extensions["sla_guard.db"].session() as session:
        ids = set(session.execute(select(EventRow.event_id)).scalars())
        return ids | set(session.execute(select(CrmLookupRow.lookup_key)).scalars())


def check(app, response, before: tuple[int, int]) -> None:
    """Never a 5xx; a 202 stored what it acknowledged, any refusal stored nothing."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    after = counts(app)
    if response.status_code == 202:
        accepted = response.get_json()["accepted"]
        assert sum(after) - sum(before) == len(accepted)
        assert set(accepted) <= event_ids(app)
    else:
        assert after == before


def generic_event(now: datetime) -> dict:
    return {
        "event_id": "evt-1",
        "type": "lead.created",
        "occurred_at": now.isoformat(),
        "lead": {"id": "L-1", "name": "ACME", "source": "website", "url": "https://crm.example/1", "tags": ["a"]},
        "touch": {"channel": "call", "by": "anna"},
    }


@EXAMPLES
@given(data=st.data())
def test_generic_webhook_never_fails_on_signed_mutations(app, client, clock, data, post_signed):
    body = data.draw(mutated_json(generic_event(clock())))
    before = counts(app)
    response = post_signed(client, body, clock())
    check(app, response, before)


latin1 = st.text(alphabet=st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=200)


@EXAMPLES
@given(signature=latin1, content_type=latin1, body=st.binary(max_size=200))
def test_odd_headers_never_fail(app, client, signature, content_type, body):
    before = counts(app)
    response = client.post(
        "/webhooks/generic", data=body, headers={"X-SLA-Guard-Signature": signature, "Content-Type": content_type}
    )
    check(app, response, before)


def json_crm_request(name: str, body: bytes, now: datetime) -> dict:
    if name.startswith("hubspot"):
        return {"path": "/webhooks/hubspot", "headers": hubspot_signed(body, now)}
    auth = "Basic " + b64encode(f"{PIPEDRIVE_USER}:{PIPEDRIVE_PASSWORD}".encode()).decode()
    return {"path": "/webhooks/pipedrive", "headers": {"Content-Type": "application/json", "Authorization": auth}}


@EXAMPLES
@given(data=st.data(), name=st.sampled_from(["hubspot_contact_creation_batch.json", "pipedrive_v2_deal_lost.json"]))
def test_json_crm_webhooks_never_fail_on_authentic_mutations(app, client, clock, data, name):
    document = json.loads(load(name)["request"]["body"])
    body = data.draw(mutated_json(document))
    spec = json_crm_request(name, body, clock())
    before = counts(app)
    check(app, client.post(spec["path"], data=body, headers=spec["headers"]), before)


form_values = st.one_of(
    odd_text.map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    moments.map(lambda moment: quote(moment.strftime("%Y-%m-%d %H:%M:%S"))),
    st.text(alphabet="%[]&=+", max_size=20),
)


@st.composite
def mutated_form(draw, body: str) -> bytes:
    pairs = body.split("&")
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        index = draw(st.integers(min_value=0, max_value=len(pairs) - 1))
        key = pairs[index].split("=", 1)[0]
        if "token" in key or "account" in key:  # keep the request authentic: mutate what follows
            continue
        pairs[index] = f"{key}={draw(form_values)}" if draw(st.booleans()) else draw(form_values)
    return "&".join(pairs).encode()


@EXAMPLES
@given(data=st.data(), name=st.sampled_from(["amocrm_lead_add.json", "amocrm_lead_status_lost.json"]))
def test_amocrm_webhook_never_fails_on_authentic_mutations(app, client, data, name):
    fixture = load(name)
    body = data.draw(mutated_form(fixture["request"]["body"]))
    before = counts(app)
    response = client.post(f"/webhooks/amocrm/{AMO_TOKEN}", data=body, content_type="application/x-www-form-urlencoded")
    check(app, response, before)


@EXAMPLES
@given(data=st.data())
def test_bitrix24_webhook_never_fails_on_authentic_mutations(app, client, data):
    body = data.draw(mutated_form(load("bitrix24_lead_add.json")["request"]["body"]))
    assert B24_APP_TOKEN in body.decode()
    before = counts(app)
    response = client.post("/webhooks/bitrix24", data=body, content_type="application/x-www-form-urlencoded")
    check(app, response, before)


url_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40).map(
    lambda text: quote(text, safe="")
)


@EXAMPLES
@given(
    path=st.sampled_from(
        ["/api/leads?status={}", "/api/leads/{}", "/api/reports/sla?from={}", "/api/reports/sla?to={}&by={}"]
    ),
    value=url_text | moments.map(lambda moment: quote(moment.isoformat(), safe="")),
)
def test_the_api_never_fails_on_odd_queries(client, path, value, api_token):
    response = client.get(path.format(value, value), headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code < 500


@pytest.mark.parametrize("lead_id", ["L\x00", "%00", "x" * 5000, "../..", "\u0661"])
def test_quarantine_retry_of_odd_lead_ids_is_refused(client, lead_id, api_token):
    response = client.post(f"/api/quarantine/{quote(lead_id)}/retry", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 404


def test_the_fuzz_reaches_the_database(app, client, clock, post_signed):
    """The generator's base event is valid: the fuzz starts from requests that are stored."""
    body = json.dumps(generic_event(clock())).encode()
    response = post_signed(client, body, clock())
    assert response.status_code == 202
    assert counts(app) == (1, 0)
