"""Acknowledge links: signed and expiring tokens, ``GET /ack/<token>``, and a ladder that stops climbing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sla_guard.config import Settings, load_settings
from sla_guard.exceptions import ConfigError
from sla_guard.store.models import AlertRow, ClockRow, EscalationRow
from sla_guard.timers.acknowledge import BadToken, ExpiredToken, ack_url, sign_token, verify_token
from tests.support.firing import run_timer
from tests.support.webhooks import received

ACK_SECRET = "test-ack-secret-0123456789abcdef"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_a_token_round_trips_until_it_expires():
    token = sign_token(ACK_SECRET, 42, "olga", NOW + timedelta(hours=24))
    claim = verify_token(ACK_SECRET, token, NOW)
    assert (claim.escalation_id, claim.recipient, claim.expires_at) == (42, "olga", NOW + timedelta(hours=24))
    with pytest.raises(ExpiredToken):
        verify_token(ACK_SECRET, token, NOW + timedelta(hours=24))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("42.", "43.", 1),  # another escalation
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another signature
        lambda t: t.rsplit(".", 1)[0],  # no signature
        lambda t: "x" + t,
    ],
)
def test_a_tampered_token_is_refused(mangle):
    token = sign_token(ACK_SECRET, 42, "olga", NOW + timedelta(hours=1))
    with pytest.raises(BadToken):
        verify_token(ACK_SECRET, mangle(token), NOW)
    with pytest.raises(BadToken):
        verify_token("another-secret-0123456789", token, NOW)


def test_a_token_cannot_be_moved_to_another_person():
    token = sign_token(ACK_SECRET, 42, "olga", NOW + timedelta(hours=1))
    signature = token.rsplit(".", 1)[1]
    other = sign_token(ACK_SECRET, 42, "boris", NOW + timedelta(hours=1)).rsplit(".", 1)[0]
    with pytest.raises(BadToken):
        verify_token(ACK_SECRET, f"{other}.{signature}", NOW)


def test_no_link_without_a_secret_or_a_public_url():
    assert ack_url(Settings(public_url="https://sla.example"), 1, "olga", NOW) is None
    assert ack_url(Settings(ack_secret=ACK_SECRET), 1, "olga", NOW) is None
    url = ack_url(Settings(ack_secret=ACK_SECRET, public_url="https://sla.example/", ack_ttl_s=3600), 1, "olga", NOW)
    assert url.startswith("https://sla.example/ack/1.")
    assert verify_token(ACK_SECRET, url.rsplit("/", 1)[1], NOW).expires_at == NOW + timedelta(hours=1)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="SLA_GUARD_ACK_SECRET is too short"):
        load_settings(env={}, overrides={"SLA_GUARD_ACK_SECRET": "short"})
    with pytest.raises(ConfigError, match="SLA_GUARD_PUBLIC_URL"):
        load_settings(env={}, overrides={"SLA_GUARD_PUBLIC_URL": "sla.example"})
    assert load_settings(env={}).ack_ttl_s == 86400


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture
def settings(settings):
    return {**settings, "SLA_GUARD_ACK_SECRET": ACK_SECRET, "SLA_GUARD_PUBLIC_URL": "https://sla.example"}


def rows(runtime, model):
    with runtime.db.session() as session:
        return list(session.execute(select(model).order_by(model.id)).scalars())


def token_of(alert: dict) -> str:
    assert alert["ack_url"].startswith("https://sla.example/ack/")
    assert alert["text"].endswith("Take it: " + alert["ack_url"])
    return alert["ack_url"].rsplit("/", 1)[1]


def test_acknowledging_stops_the_ladder(sink, app, client, runtime, clock, api_token, first_breach):
    clock_id = first_breach(client, runtime, clock)
    to_olga = next(a for a in received(sink) if a["recipient"] == "olga" and a["level"] == 1)
    answer = client.get(f"/ack/{token_of(to_olga)}")
    assert answer.status_code == 200 and "olga" in answer.get_data(as_text=True)
    level_one = next(e for e in rows(runtime, EscalationRow) if e.level == 1)
    assert (level_one.acknowledged_by, level_one.acknowledged_at) == ("olga", clock())

    clock.advance(hours=2)  # the head's level and the reassignment were due after 1 h
    result = run_timer(runtime, clock_id)
    assert result.escalation_ids == [] and not result.reassigned
    assert sorted(e.level for e in rows(runtime, EscalationRow)) == [0, 1]
    assert rows(runtime, ClockRow)[0].next_fire_at is None
    assert all(alert["level"] < 2 for alert in received(sink))
    lead = client.get("/api/leads/L-1001", headers={"Authorization": f"Bearer {api_token}"}).get_json()
    assert [(x["level"], x["acknowledged_by"]) for x in lead["escalations"]] == [(0, None), (1, "olga")]


def test_a_second_click_changes_nothing(sink, app, client, runtime, clock, first_breach):
    first_breach(client, runtime, clock)
    alerts = [a for a in received(sink) if a["level"] == 1]
    first, second = token_of(alerts[0]), token_of(alerts[1])
    assert client.get(f"/ack/{first}").status_code == 200
    clock.advance(minutes=5)
    answer = client.get(f"/ack/{second}")
    assert answer.status_code == 200 and "already" in answer.get_data(as_text=True)
    level_one = next(e for e in rows(runtime, EscalationRow) if e.level == 1)
    assert level_one.acknowledged_by == alerts[0]["recipient"]
    first_click = level_one.acknowledged_at.strftime("%H:%M")  # the rules file's zone is UTC here
    assert f"by {alerts[0]['recipient']} at {first_click}." in answer.get_data(as_text=True)


def test_link_previews_and_head_requests_do_not_acknowledge(sink, app, client, runtime, clock, first_breach):
    first_breach(client, runtime, clock)
    token = token_of(next(a for a in received(sink) if a["level"] == 1))
    preview = client.get(
        f"/ack/{token}", headers={"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}
    )
    assert preview.status_code == 200 and 'method="post"' in preview.get_data(as_text=True)
    assert client.head(f"/ack/{token}").status_code == 200
    assert all(e.acknowledged_at is None for e in rows(runtime, EscalationRow))
    assert client.post(f"/ack/{token}").status_code == 200
    assert any(e.acknowledged_at is not None for e in rows(runtime, EscalationRow))


def test_expired_and_forged_links(sink, app, client, runtime, clock, first_breach):
    first_breach(client, runtime, clock)
    token = token_of(next(a for a in received(sink) if a["level"] == 1))
    assert client.get(f"/ack/{token[:-3]}xyz").status_code == 404
    forged = sign_token("some-other-secret-123456", 1, "olga", clock() + timedelta(hours=1))
    assert client.get(f"/ack/{forged}").status_code == 404
    assert client.get(f"/ack/{sign_token(ACK_SECRET, 9999, 'olga', clock() + timedelta(hours=1))}").status_code == 404
    clock.advance(hours=24)
    assert client.get(f"/ack/{token}").status_code == 410
    assert all(e.acknowledged_at is None for e in rows(runtime, EscalationRow))


def test_every_alert_row_carries_its_own_recipients_link(sink, app, client, runtime, clock, first_breach):
    first_breach(client, runtime, clock)
    for alert in rows(runtime, AlertRow):
        payload = json.loads(alert.payload)
        claim = verify_token(ACK_SECRET, token_of(payload), clock())
        assert (claim.escalation_id, claim.recipient) == (alert.escalation_id, alert.recipient)


def test_without_a_secret_the_endpoint_is_off(settings, clock):
    from sla_guard import create_app

    off = create_app({**settings, "SLA_GUARD_ACK_SECRET": None, "TESTING": True, "CLOCK": clock})
    token = sign_token(ACK_SECRET, 1, "olga", clock() + timedelta(hours=1))
    assert off.test_client().get(f"/ack/{token}").status_code == 404
    off.extensions["sla_guard.db"].dispose()
