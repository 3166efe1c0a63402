"""Each channel against a local stand-in of its service: the request as the real API expects it,
and every failure sorted into "retry" (timeouts, 5xx, 429 with its wait) or "give up"."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sla_guard.core.rules.schema import Channel
from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.delivery import channel_secrets, send
from sla_guard.outbox.http import redact
from sla_guard.outbox.notify.messages import alert_payload
from sla_guard.outbox.notify.teams import card_message
from tests.support.fakes import (
    SLACK_BOT_TOKEN,
    TELEGRAM_TOKEN,
    FakeSlack,
    FakeTelegram,
    SmtpSink,
    make_certificate,
    silent_server,
    telegram_429,
)

AT = datetime(2026, 11, 23, 9, 15, 2, tzinfo=UTC)
LEAD = {
    "lead_id": "L-1001",
    "name": "ACME",
    "source": "website",
    "owner": "anna",
    "stage": "new",
    "url": "https://crm.example/leads/1001",
}


def payload(**extra) -> dict:
    base = alert_payload(
        alert_id=7,
        escalation_id=3,
        kind="first_touch.breach",
        level=1,
        lead=LEAD,
        rule="hot website leads",
        clock="first_touch",
        due_at=AT - timedelta(seconds=62),
        fired_at=AT,
        recipient="olga",
        role="manager",
        channel="x",
        locale="en",
        ack_url="https://sla.example/ack/3.1795.b2xnYQ.sig",
        sla=timedelta(minutes=15),
    )
    return {**base, **extra}


def channel(**raw) -> Channel:
    return Channel.model_validate(raw)


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def fails(name, spec, http, address=None, **kwargs) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        send(name, spec, payload(), http, address=address, **kwargs)
    return info.value


# --- Telegram -------------------------------------------------------------------------------


@pytest.fixture
def telegram(httpserver):
    return FakeTelegram().install(httpserver)


def tg(httpserver, **extra) -> Channel:
    return channel(type="telegram", token=TELEGRAM_TOKEN, api_url=httpserver.url_for("/").rstrip("/"), **extra)


def test_telegram_sends_the_text_to_the_persons_chat(telegram, httpserver, http):
    send("tg", tg(httpserver), payload(), http, address="1001")
    [message] = telegram.messages
    assert message["chat_id"] == "1001"
    assert message["parse_mode"] == "HTML"
    assert message["text"] == (
        "<b>Lead ACME #L-1001 missed its first touch</b>\n"
        "The deadline passed at 09:14, 1 min 2 sec ago; the SLA was 15 min.\n"
        "<i>Owner: anna · Source: website · Rule: hot website leads</i>"
    )
    assert message["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Open lead", "url": "https://crm.example/leads/1001"},
                {"text": "Take it", "url": "https://sla.example/ack/3.1795.b2xnYQ.sig"},
            ]
        ]
    }
    assert message["link_preview_options"] == {"is_disabled": True}
    [(request, _)] = httpserver.log
    assert request.path == f"/bot{TELEGRAM_TOKEN}/sendMessage" and request.mimetype == "application/json"


def test_telegram_channel_chat_wins_over_the_person(telegram, httpserver, http):
    send("tg", tg(httpserver, chat="-100123"), payload(), http, address="1001")
    assert telegram.messages[0]["chat_id"] == "-100123"


def test_the_fake_bot_api_takes_form_bodies_too(telegram, httpserver):
    answer = requests.post(
        httpserver.url_for(f"/bot{TELEGRAM_TOKEN}/sendMessage"), data={"chat_id": "1001", "text": "hi"}
    )
    assert answer.json()["ok"] is True and telegram.messages == [{"chat_id": "1001", "text": "hi"}]


def test_telegram_bad_token_is_permanent_and_never_shows_the_token(telegram, httpserver, http):
    error = fails(
        "tg",
        channel(type="telegram", token="999:wrong-token-value", api_url=httpserver.url_for("/").rstrip("/")),
        http,
        address="1001",
    )
    assert not error.transient
    assert str(error) == "telegram: HTTP 401 Unauthorized (check the bot token)"
    assert "wrong-token-value" not in str(error)


def test_telegram_unknown_chat_is_permanent(telegram, httpserver, http):
    error = fails("tg", tg(httpserver), http, address="42")
    assert (error.transient, str(error)) == (False, "telegram: HTTP 400 Bad Request: chat not found")


def test_telegram_429_waits_as_long_as_the_bot_api_says(telegram, httpserver, http):
    telegram.failures.append(telegram_429(17))
    error = fails("tg", tg(httpserver), http, address="1001")
    assert (error.transient, error.retry_after_s) == (True, 17.0)


def test_telegram_5xx_is_transient(telegram, httpserver, http):
    telegram.failures.append((502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}))
    assert fails("tg", tg(httpserver), http, address="1001").transient


def test_a_person_without_a_chat_cannot_get_telegram(telegram, httpserver, http):
    error = fails("tg", tg(httpserver), http, address=None)
    assert not error.transient and telegram.messages == []


def test_a_silent_server_times_out_as_transient(http):
    with silent_server() as port:
        spec = channel(type="telegram", token=TELEGRAM_TOKEN, api_url=f"http://127.0.0.1:{port}", timeout_s=0.3)
        error = fails("tg", spec, http, address="1001")
    assert error.transient and "timed out" in str(error) and TELEGRAM_TOKEN not in str(error)


def test_a_closed_port_is_transient_and_the_url_stays_secret(http):
    from sla_guard.redis_server import free_port

    spec = channel(type="telegram", token=TELEGRAM_TOKEN, api_url=f"http://127.0.0.1:{free_port()}")
    error = fails("tg", spec, http, address="1001")
    assert error.transient and TELEGRAM_TOKEN not in str(error) and "127.0.0.1" not in str(error)


# --- Slack ----------------------------------------------------------------------------------


@pytest.fixture
def slack(httpserver):
    return FakeSlack().install(httpserver)


def test_slack_incoming_webhook_gets_the_text_and_mentions_the_member(slack, httpserver, http):
    send("sl", channel(type="slack", url=httpserver.url_for(FakeSlack.hook_path)), payload(), http, address="U0ANNA")
    [message] = slack.messages
    assert message["text"].startswith("<@U0ANNA> Lead ACME #L-1001")
    assert message["unfurl_links"] is False and message["unfurl_media"] is False


@pytest.mark.parametrize(
    ("status", "body", "transient"),
    [
        (400, "invalid_payload", False),
        (403, "action_prohibited", False),
        (404, "channel_not_found", False),
        (410, "channel_is_archived", False),
        (500, "server error", True),
        (503, "unavailable", True),
    ],
)
def test_slack_webhook_failures(slack, httpserver, http, status, body, transient):
    slack.failures.append((status, body, {}))
    error = fails("sl", channel(type="slack", url=httpserver.url_for(FakeSlack.hook_path)), http)
    assert error.transient is transient
    assert "XXXXSECRETXXXX" not in str(error)


def test_slack_webhook_429_honours_retry_after(slack, httpserver, http):
    slack.failures.append((429, "rate_limited", {"Retry-After": "30"}))
    error = fails("sl", channel(type="slack", url=httpserver.url_for(FakeSlack.hook_path)), http)
    assert (error.transient, error.retry_after_s) == (True, 30.0)


def slack_bot(httpserver, **extra) -> Channel:
    return channel(type="slack", token=SLACK_BOT_TOKEN, api_url=httpserver.url_for("/api").rstrip("/"), **extra)


def test_slack_bot_posts_to_the_member_with_chat_post_message(slack, httpserver, http):
    send("sl", slack_bot(httpserver), payload(), http, address="U0ANNA")
    [message] = slack.messages
    assert message["channel"] == "U0ANNA" and message["text"].startswith("Lead ACME")
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {SLACK_BOT_TOKEN}"


def test_slack_bot_posts_to_its_channel_mentioning_the_member(slack, httpserver, http):
    send("sl", slack_bot(httpserver, channel="C0SALES"), payload(), http, address="U0ANNA")
    assert slack.messages[0]["channel"] == "C0SALES" and slack.messages[0]["text"].startswith("<@U0ANNA> ")


@pytest.mark.parametrize(
    ("answer", "transient"),
    [
        ('{"ok": false, "error": "channel_not_found"}', False),
        ('{"ok": false, "error": "invalid_auth"}', False),
        ('{"ok": false, "error": "ratelimited"}', True),
        ('{"ok": false, "error": "internal_error"}', True),
    ],
)
def test_slack_bot_errors(slack, httpserver, http, answer, transient):
    slack.failures.append((200, answer, {}))
    error = fails("sl", slack_bot(httpserver, channel="C0SALES"), http)
    assert error.transient is transient and SLACK_BOT_TOKEN not in str(error)


def test_slack_bot_wrong_token_is_permanent(slack, httpserver, http):
    spec = channel(type="slack", token="xoxb-wrong", api_url=httpserver.url_for("/api").rstrip("/"), channel="C0SALES")
    error = fails("sl", spec, http)
    assert (error.transient, str(error)) == (False, "slack: invalid_auth")


def test_slack_http_429_from_the_web_api(slack, httpserver, http):
    slack.failures.append((429, "", {"Retry-After": "5"}))
    error = fails("sl", slack_bot(httpserver, channel="C0SALES"), http)
    assert (error.transient, error.retry_after_s) == (True, 5.0)


# --- Microsoft Teams ------------------------------------------------------------------------


def test_teams_gets_an_adaptive_card_with_lead_and_acknowledge_buttons(httpserver, http):
    httpserver.expect_request("/workflows/hook", method="POST").respond_with_data("", status=202)
    send("ms", channel(type="teams", url=httpserver.url_for("/workflows/hook")), payload(), http)
    [(request, _)] = httpserver.log
    body = request.get_json()
    [attachment] = body["attachments"]
    assert body["type"] == "message" and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (
        card["type"] == "AdaptiveCard"
        and card["body"][0]["inlines"][0]["text"] == "Lead ACME #L-1001 missed its first touch"
    )
    assert [(a["title"], a["url"]) for a in card["actions"]] == [
        ("Open lead", "https://crm.example/leads/1001"),
        ("Take it", "https://sla.example/ack/3.1795.b2xnYQ.sig"),
    ]


def test_a_throttled_legacy_teams_connector_is_retried(httpserver, http):
    httpserver.expect_request("/webhookb2/x").respond_with_data(
        "Microsoft Teams endpoint returned HTTP error 429 with ContextId ...", status=200
    )
    assert fails("ms", channel(type="teams", url=httpserver.url_for("/webhookb2/x")), http).transient


@pytest.mark.parametrize(("status", "transient"), [(400, False), (404, False), (429, True), (500, True)])
def test_teams_failures(httpserver, http, status, transient):
    httpserver.expect_request("/webhookb2/x").respond_with_data("no", status=status)
    assert fails("ms", channel(type="teams", url=httpserver.url_for("/webhookb2/x")), http).transient is transient


def test_card_summary_uses_the_subject():
    assert card_message(payload())["summary"] == "Lead ACME #L-1001 missed its first touch"


# --- e-mail ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def mail(port, cert, **extra) -> Channel:
    return channel(type="email", host="localhost", port=port, ca_file=str(cert), **{"from": "sla@example.com"}, **extra)


def test_email_over_starttls_with_login_reaches_the_persons_address(certificate, http):
    cert, key = certificate
    with SmtpSink(cert, key, "starttls", user="sla", password="mail-secret-pw") as sink:
        send(
            "mail",
            mail(sink.port, cert, user="sla", password="mail-secret-pw"),
            payload(),
            http,
            address="olga@example.com",
        )
    [received] = sink.messages
    message = received["message"]
    assert received["tls"] is True and received["to"] == ["olga@example.com"]
    assert message["Subject"] == "Lead ACME #L-1001 missed its first touch"
    assert message["From"] == "sla@example.com" and message["To"] == "olga@example.com"
    assert message["Message-ID"] == "<sla-guard.alert.7@example.com>"
    body = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("Lead ACME #L-1001 missed its first touch.\nThe deadline passed at 09:14, 1 min 2 sec ago")
    assert "https://crm.example/leads/1001" in body and "Take it: https://sla.example/ack/" in body
    page = message.get_body(("html",)).get_content()
    assert '<a href="https://sla.example/ack/3.1795.b2xnYQ.sig">Take it</a>' in page


def test_email_over_implicit_tls(certificate, http):
    cert, key = certificate
    with SmtpSink(cert, key, "ssl") as sink:
        send("mail", mail(sink.port, cert, security="ssl", to=["sales@example.com"]), payload(), http)
    assert sink.messages[0]["to"] == ["sales@example.com"] and sink.messages[0]["tls"] is True


def test_wrong_smtp_password_is_permanent_and_secret(certificate, http):
    cert, key = certificate
    with SmtpSink(cert, key, "starttls", user="sla", password="right-password") as sink:
        spec = mail(sink.port, cert, user="sla", password="wrong-password")
        error = fails("mail", spec, http, address="olga@example.com")
    assert not error.transient and error.args[0].startswith("email: login refused (535")
    assert "wrong-password" not in str(error) and sink.messages == []


def test_an_untrusted_certificate_is_permanent(certificate, http):
    cert, key = certificate
    with SmtpSink(cert, key, "starttls") as sink:
        spec = channel(type="email", host="localhost", port=sink.port, **{"from": "sla@example.com"})
        error = fails("mail", spec, http, address="olga@example.com")
    assert not error.transient and "certificate" in str(error)


def test_a_server_without_starttls_never_gets_the_password(http):
    with SmtpSink(None, None, "plain") as sink:
        error = fails(
            "mail",
            channel(
                type="email",
                host="127.0.0.1",
                port=sink.port,
                user="sla",
                password="pw-secret",
                **{"from": "sla@example.com"},
            ),
            http,
            address="olga@example.com",
        )
    assert not error.transient and "STARTTLS" in str(error).upper()


@pytest.mark.parametrize(("code", "transient"), [(450, True), (550, False)])
def test_refused_recipients(certificate, http, code, transient):
    cert, key = certificate
    with SmtpSink(cert, key, "starttls") as sink:
        sink.reject = code
        error = fails("mail", mail(sink.port, cert), http, address="olga@example.com")
    assert error.transient is transient and str(code) in str(error)


def test_smtp_connection_refused_and_timeout_are_transient(http):
    from sla_guard.redis_server import free_port

    closed = fails(
        "mail", channel(type="email", host="127.0.0.1", port=free_port(), **{"from": "a@b.c"}), http, address="x@y.z"
    )
    with silent_server() as port:
        silent = fails(
            "mail",
            channel(type="email", host="127.0.0.1", port=port, timeout_s=0.3, **{"from": "a@b.c"}),
            http,
            address="x@y.z",
        )
    assert closed.transient and silent.transient


# --- generic webhook and log ----------------------------------------------------------------


def test_webhook_posts_the_alert_json_with_its_id(httpserver, http):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    send("hook", channel(type="webhook", url=httpserver.url_for("/hook")), payload(), http)
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert request.headers["X-SLA-Guard-Alert-Id"] == "7"
    assert body["ack_url"] == "https://sla.example/ack/3.1795.b2xnYQ.sig" and body["kind"] == "first_touch.breach"


def test_log_channel_writes_the_text(caplog, http):
    with caplog.at_level(logging.WARNING, logger="sla_guard.alerts"):
        send("log", None, payload(), http)
    assert "Lead ACME #L-1001" in caplog.records[0].getMessage()


def test_secrets_are_found_and_blanked():
    spec = channel(type="email", host="h", password="pa55word", **{"from": "a@b.c"})
    assert channel_secrets(spec) == ("pa55word",)
    assert channel_secrets(channel(type="telegram", token="1:tok")) == ("1:tok",)
    assert redact("login pa55word refused", channel_secrets(spec)) == "login *** refused"


# --- CRM task -------------------------------------------------------------------------------


AMO_TOKEN = "amo-long-lived-token-secret"


def amocrm(httpserver, tasks: list) -> dict:
    """A fake amoCRM: lists the lead's tasks (204 when none) and creates tasks."""
    from werkzeug.wrappers import Response

    def listing(request):
        assert request.headers["Authorization"] == f"Bearer {AMO_TOKEN}"
        assert request.args["filter[entity_id]"] == "1001"
        if not tasks:
            return Response(status=204)
        return Response(json.dumps({"_embedded": {"tasks": tasks}}), content_type="application/hal+json")

    def create(request):
        [task] = request.get_json()
        tasks.append({**task, "id": 500 + len(tasks)})
        return Response(
            json.dumps({"_embedded": {"tasks": [{"id": 500 + len(tasks) - 1, "request_id": task["request_id"]}]}}),
            content_type="application/hal+json",
        )

    httpserver.expect_request("/api/v4/tasks", method="GET").respond_with_handler(listing)
    httpserver.expect_request("/api/v4/tasks", method="POST").respond_with_handler(create)
    return {
        "SLA_GUARD_AMOCRM_BASE_URL": httpserver.url_for("/").rstrip("/"),
        "SLA_GUARD_AMOCRM_ACCESS_TOKEN": AMO_TOKEN,
    }


def test_crm_channel_creates_one_task_for_the_recipient_even_when_retried(httpserver, http):
    tasks: list = []
    settings = amocrm(httpserver, tasks)
    spec = channel(type="crm", crm="amocrm", due_in="1h")
    alert = payload(lead_id="1001")
    send("crm", spec, alert, http, address="77", settings=settings)
    send("crm", spec, alert, http, address="77", settings=settings)  # a retry after a crash: found, not made again
    [task] = tasks
    assert (task["entity_id"], task["entity_type"], task["responsible_user_id"]) == (1001, "leads", 77)
    assert task["complete_till"] == int((AT + timedelta(hours=1)).timestamp())
    assert task["text"].startswith("Lead ACME #L-1001") and "[sla-guard-alert-7]" in task["text"]


def test_crm_channel_failures(httpserver, http):
    spec = channel(type="crm", crm="amocrm")
    unset = fails("crm", spec, http, address="77", settings={})
    assert not unset.transient and "settings are not set" in str(unset)
    manager_without_id = fails("crm", spec, http, address="olga", settings=amocrm(httpserver, []))
    assert not manager_without_id.transient and "crm_id" in str(manager_without_id)


def test_crm_channel_errors_keep_the_token_out(httpserver, http):
    settings = {
        "SLA_GUARD_AMOCRM_BASE_URL": httpserver.url_for("/").rstrip("/"),
        "SLA_GUARD_AMOCRM_ACCESS_TOKEN": AMO_TOKEN,
    }
    outcomes = []
    for status in (401, 503):
        httpserver.clear()
        httpserver.expect_request("/api/v4/tasks").respond_with_data("", status=status)
        with pytest.raises(DeliveryError) as info:
            send(
                "crm", channel(type="crm", crm="amocrm"), payload(lead_id="1001"), http, address="77", settings=settings
            )
        outcomes.append((info.value.transient, AMO_TOKEN in str(info.value)))
    assert outcomes == [(False, False), (True, False)]
