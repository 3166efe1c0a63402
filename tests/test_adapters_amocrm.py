"""amoCRM / Kommo adapter: the shared fixtures as they are, plus every kind it handles."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from sla_guard.exceptions import ConfigError, InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import amocrm
from sla_guard.ingest.adapters.base import RawRequest, outcome_in
from tests.support.crm_payloads import assert_means, fixtures_of, load, raw_request

TOKEN = "k3Jd9sLq0pX7vB2n"
SETTINGS = {"SLA_GUARD_AMOCRM_TOKEN": TOKEN, "SLA_GUARD_AMOCRM_ACCOUNT_ID": "30307558"}
NOW = datetime(2024, 9, 17, 16, 0, tzinfo=UTC)
ACCOUNT = [
    ("account[subdomain]", "acmesales"),
    ("account[id]", "30307558"),
    ("account[_links][self]", "https://acmesales.amocrm.ru"),
]


def request(
    body: str | bytes, *, token: str = TOKEN, content_type: str = "application/x-www-form-urlencoded"
) -> RawRequest:
    path = f"/webhooks/amocrm/{token}"
    return RawRequest(
        method="POST",
        path=path,
        url=f"https://sla.example.com{path}",
        headers={"Content-Type": content_type},
        body=body if isinstance(body, bytes) else body.encode(),
        content_type=content_type,
    )


def fixture_request(fixture: dict, *, token: str = TOKEN) -> RawRequest:
    return raw_request(fixture, path=fixture["request"]["path"].replace("<token>", token))


def form(*pairs: tuple[str, str], account: bool = True) -> str:
    return urlencode(list(pairs) + (ACCOUNT if account else []))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the shared fixtures ------------------------------------------------------------------

AMOCRM_FIXTURES = fixtures_of("amocrm")


def test_every_amocrm_fixture_is_covered():
    assert len(AMOCRM_FIXTURES) >= 5


@pytest.mark.parametrize("name", AMOCRM_FIXTURES)
def test_fixture_is_authentic_and_means_what_it_says(name):
    fixture = load(name)
    raw = fixture_request(fixture)
    amocrm.verify(raw, SETTINGS, NOW)
    result = amocrm.parse(raw, SETTINGS)
    assert_means(result.events, fixture["means"])
    assert result.ignored == []


def test_new_lead_carries_what_the_rules_match_on():
    event = amocrm.parse(fixture_request(load("amocrm_lead_add.json")), SETTINGS).events[0]
    assert event.lead.name == "Website request"  # "+" is a space
    assert event.lead.url == "https://acmesales.amocrm.ru/leads/detail/15318175"
    assert event.event_id == "amocrm-leads-add-15318175-1726572752"


def test_lost_lead_is_closed_in_its_lost_status():
    event = amocrm.parse(fixture_request(load("amocrm_lead_status_lost.json")), SETTINGS).events[0]
    assert (event.outcome, event.lead.stage, event.previous_stage) == ("lost", "143", "67548619")
    assert event.reason is None  # amoCRM sends the loss reason only over REST


def test_same_request_twice_gives_the_same_event_ids():
    raw = fixture_request(load("amocrm_task_completed.json"))
    assert [e.event_id for e in amocrm.parse(raw, SETTINGS).events] == [
        e.event_id for e in amocrm.parse(raw, SETTINGS).events
    ]


# --- authenticity -------------------------------------------------------------------------


def test_wrong_path_token_is_refused():
    with pytest.raises(Unauthorized, match="token"):
        amocrm.verify(fixture_request(load("amocrm_lead_add.json"), token="guessed-token-000"), SETTINGS, NOW)


def test_webhook_of_another_account_is_refused():
    settings = {**SETTINGS, "SLA_GUARD_AMOCRM_ACCOUNT_ID": "99999999"}
    with pytest.raises(Unauthorized, match="another amoCRM account"):
        amocrm.verify(fixture_request(load("amocrm_lead_add.json")), settings, NOW)


def test_entity_of_another_account_is_refused_even_when_account_id_matches():
    body = form(
        ("leads[add][0][id]", "1"),
        ("leads[add][0][account_id]", "11111111"),
        ("leads[add][0][created_at]", "1726572752"),
    )
    with pytest.raises(Unauthorized, match="another amoCRM account"):
        amocrm.verify(request(body), SETTINGS, NOW)


LEAD_ADDED = ("leads[add][0][id]", "101")


@pytest.mark.parametrize(
    "settings",
    [
        {**SETTINGS, "SLA_GUARD_AMOCRM_SUBDOMAIN": "AcmeSales"},
        {**SETTINGS, "SLA_GUARD_AMOCRM_BASE_URL": "https://acmesales.amocrm.ru"},
        {**SETTINGS, "SLA_GUARD_AMOCRM_BASE_URL": "https://acmesales.kommo.com/"},
    ],
)
def test_a_webhook_without_account_id_is_accepted_when_its_subdomain_is_ours(settings):
    body = urlencode([LEAD_ADDED, ("account[subdomain]", "acmesales")])
    amocrm.verify(request(body), settings, NOW)
    with pytest.raises(Unauthorized, match="another amoCRM account"):
        amocrm.verify(request(urlencode([LEAD_ADDED, ("account[subdomain]", "othersales")])), settings, NOW)
    with pytest.raises(Unauthorized, match="another amoCRM account"):  # an entity of another account
        other = [LEAD_ADDED, ("leads[add][0][account_id]", "1"), ("account[subdomain]", "acmesales")]
        amocrm.verify(request(urlencode(other)), settings, NOW)


def test_a_subdomain_alone_is_refused_when_sla_guard_does_not_know_ours():
    with pytest.raises(Unauthorized, match="does not name"):
        amocrm.verify(request(urlencode([LEAD_ADDED, ("account[subdomain]", "acmesales")])), SETTINGS, NOW)
    behind_proxy = {**SETTINGS, "SLA_GUARD_AMOCRM_BASE_URL": "https://crm.example.com"}
    with pytest.raises(Unauthorized, match="does not name"):
        amocrm.verify(request(urlencode([LEAD_ADDED, ("account[subdomain]", "crm")])), behind_proxy, NOW)


def test_body_without_account_is_refused():
    with pytest.raises(Unauthorized, match="account"):
        amocrm.verify(request(form(("leads[add][0][id]", "1"), account=False)), SETTINGS, NOW)


def test_unconfigured_amocrm_refuses_everything():
    assert not amocrm.enabled({"SLA_GUARD_AMOCRM_TOKEN": TOKEN})
    assert amocrm.enabled(SETTINGS)
    with pytest.raises(Unauthorized):
        amocrm.verify(fixture_request(load("amocrm_lead_add.json")), {}, NOW)


# --- every kind ---------------------------------------------------------------------------


def lead(action: str, index: int = 0, **fields: str) -> list[tuple[str, str]]:
    return [(f"leads[{action}][{index}][{key}]", value) for key, value in fields.items()]


def test_one_request_with_several_entities_actions_and_indexes():
    body = form(
        *lead(
            "add",
            0,
            id="101",
            status_id="5001",
            pipeline_id="77",
            responsible_user_id="9",
            price="500",
            created_at="1726572000",
            updated_at="1726572000",
        ),
        *lead(
            "add",
            1,
            id="102",
            status_id="5001",
            responsible_user_id="9",
            created_at="1726572100",
            updated_at="1726572100",
        ),
        *lead("status", 0, id="101", status_id="142", old_status_id="5002", updated_at="1726573000"),
        ("contacts[add][0][id]", "555"),
        ("contacts[add][0][created_at]", "1726572000"),
        ("task[update][0][id]", "7"),
        ("task[update][0][element_id]", "102"),
        ("task[update][0][element_type]", "2"),
        ("task[update][0][status]", "1"),
        ("task[update][0][responsible_user_id]", "9"),
        ("task[update][0][updated_at]", "1726572500"),
    )
    result = amocrm.parse(request(body), SETTINGS)
    assert [(e.type, e.lead.id) for e in result.events] == [
        ("lead.created", "amocrm:lead:101"),
        ("lead.created", "amocrm:lead:102"),
        ("lead.touched", "amocrm:lead:102"),
        ("lead.closed", "amocrm:lead:101"),
    ]
    closed = result.events[-1]
    assert (closed.outcome, closed.previous_stage) == ("won", "5002")
    assert result.ignored == ["contacts.add"]


def test_moving_to_another_stage_is_a_stage_change():
    body = form(
        *lead("status", id="101", status_id="5003", old_status_id="5002", pipeline_id="77", updated_at="1726573000")
    )
    event = amocrm.parse(request(body), SETTINGS).events[0]
    assert (event.type, event.lead.stage, event.previous_stage, event.lead.pipeline) == (
        "lead.stage_changed",
        "5003",
        "5002",
        "77",
    )
    assert event.occurred_at == at("2024-09-17T11:36:40+00:00")


def test_won_and_lost_statuses_are_configurable():
    settings = {**SETTINGS, "SLA_GUARD_AMOCRM_WON_STATUSES": "142, 7001", "SLA_GUARD_AMOCRM_LOST_STATUSES": "143,7002"}
    body = form(
        *lead("status", 0, id="1", status_id="7001", updated_at="1726573000"),
        *lead("status", 1, id="2", status_id="7002", updated_at="1726573000"),
    )
    events = amocrm.parse(request(body), settings).events
    assert [(e.lead.id, e.type, e.outcome) for e in events] == [
        ("amocrm:lead:1", "lead.closed", "won"),
        ("amocrm:lead:2", "lead.closed", "lost"),
    ]
    assert outcome_in("7001", amocrm.mapping_from_settings(settings)) == "won"
    assert outcome_in("7001", amocrm.DEFAULT_MAPPING) is None


def test_update_refreshes_the_lead_but_never_moves_its_stage():
    body = form(
        *lead(
            "update",
            id="101",
            name="Bigger order",
            price="9000",
            status_id="5003",
            responsible_user_id="9",
            updated_at="1726573000",
        )
    )
    event = amocrm.parse(request(body), SETTINGS).events[0]
    assert event.type == "lead.updated"
    assert (event.lead.name, event.lead.amount, event.lead.owner, event.lead.stage) == ("Bigger order", 9000, "9", None)


def test_deleted_lead_is_closed_without_an_outcome():
    body = form(*lead("delete", id="101", status_id="5003", pipeline_id="77"))
    assert amocrm.parse(request(body), SETTINGS).ignored == ["leads.delete"]  # no time: acknowledged only
    event = amocrm.parse(request(body), SETTINGS, received_at=NOW).events[0]
    assert (event.type, event.outcome, event.reason, event.occurred_at) == ("lead.closed", None, "deleted", NOW)


def test_restored_lead_reopens_in_its_stage():
    body = form(*lead("restore", id="101", status_id="5003", updated_at="1726573000"))
    event = amocrm.parse(request(body), SETTINGS).events[0]
    assert (event.type, event.lead.stage) == ("lead.stage_changed", "5003")


def note(note_type: str, **extra: str) -> list[tuple[str, str]]:
    fields = {
        "id": "900",
        "note_type": note_type,
        "element_type": "2",
        "element_id": "101",
        "main_user_id": "9",
        "created_by": "9",
        "created_at": "1726580291",
        **extra,
    }
    return [(f"leads[note][0][note][{key}]", value) for key, value in fields.items()]


def test_outgoing_call_and_outgoing_sms_are_touches():
    call = amocrm.parse(request(form(*note("11", text='{"DURATION": 40}'))), SETTINGS).events[0]
    assert (call.type, call.touch.channel, call.touch.by, call.lead.id) == (
        "lead.touched",
        "call",
        "9",
        "amocrm:lead:101",
    )
    sms = amocrm.parse(request(form(*note("103"))), SETTINGS).events[0]
    assert sms.touch.channel == "sms"


def test_unanswered_calls():
    missed = amocrm.parse(request(form(*note("10", text='{"DURATION": 0}'))), SETTINGS)
    assert missed.events == [] and missed.ignored == ["leads.note"]  # the client is still waiting
    attempt = amocrm.parse(request(form(*note("11", text='{"DURATION": 0}'))), SETTINGS).events[0]
    assert (attempt.type, attempt.touch.outcome) == ("lead.touched", "no_answer")  # the manager tried


def test_common_note_is_not_a_touch():
    result = amocrm.parse(request(form(*note("4", text="Клиент просил перезвонить"))), SETTINGS)
    assert result.events == [] and result.ignored == ["leads.note"]


def test_note_time_without_unix_fields_is_the_accounts_local_time():
    body = form(*note("10", created_at="", date_create="2024-09-17 16:38:11"))
    moscow = amocrm.parse(request(body), SETTINGS).events[0]
    assert moscow.occurred_at == at("2024-09-17T13:38:11+00:00")
    yekaterinburg = amocrm.parse(request(body), {**SETTINGS, "SLA_GUARD_AMOCRM_TIMEZONE": "Asia/Yekaterinburg"}).events[
        0
    ]
    assert yekaterinburg.occurred_at == at("2024-09-17T11:38:11+00:00")
    with pytest.raises(ConfigError, match="SLA_GUARD_AMOCRM_TIMEZONE"):
        amocrm.parse(request(body), {**SETTINGS, "SLA_GUARD_AMOCRM_TIMEZONE": "Mars/Olympus"})


def task(**fields: str) -> list[tuple[str, str]]:
    base = {
        "id": "7",
        "element_id": "101",
        "element_type": "2",
        "status": "1",
        "action_close": "1",
        "responsible_user_id": "9",
        "updated_at": "1726585923",
    }
    return [(f"task[update][0][{key}]", value) for key, value in {**base, **fields}.items()]


def test_tasks_that_are_not_completed_touches():
    assert amocrm.parse(request(form(*task(status="0", action_close="0"))), SETTINGS).events == []
    on_contact = amocrm.parse(request(form(*task(element_type="1"))), SETTINGS)
    assert on_contact.events == [] and on_contact.ignored == ["task.update"]


def test_task_text_time_is_utc_as_amocrm_sends_it():
    event = amocrm.parse(request(form(*task(updated_at="", last_modified="2024-09-17 15:12:03"))), SETTINGS).events[0]
    assert event.occurred_at == at("2024-09-17T15:12:03+00:00")


def message(kind: str, author_type: str = "internal", **extra: str) -> list[tuple[str, str]]:
    fields = {
        "id": "b26bbe6d-a691",
        "chat_id": "f7432b58",
        "talk_id": "166",
        "contact_id": "13311307",
        "text": "Здравствуйте! Пришлю КП сегодня",
        "created_at": "1726581000",
        "element_type": "2",
        "entity_type": "lead",
        "element_id": "101",
        "entity_id": "101",
        "type": kind,
        "author.id": "9",
        "author.type": author_type,
        **extra,
    }
    return [
        ("message[add][0]" + "".join(f"[{part}]" for part in key.split(".")), value) for key, value in fields.items()
    ]


def test_managers_message_is_a_touch_and_clients_message_is_not():
    out = amocrm.parse(request(form(*message("outgoing"))), SETTINGS).events[0]
    assert (out.type, out.touch.channel, out.touch.by, out.lead.id) == (
        "lead.touched",
        "message",
        "9",
        "amocrm:lead:101",
    )
    assert out.occurred_at == at("2024-09-17T13:50:00+00:00")
    incoming = amocrm.parse(request(form(*message("incoming", author_type="external"))), SETTINGS)
    assert incoming.events == [] and incoming.ignored == ["message.add"]
    bot = amocrm.parse(request(form(*message("outgoing", author_type="bot"))), SETTINGS)
    assert bot.events == []


def test_unknown_entities_are_acknowledged_not_refused():
    body = form(("companies[update][0][id]", "1"), ("unsorted[add][0][uid]", "x"), ("talk[add][0][talk_id]", "3"))
    result = amocrm.parse(request(body), SETTINGS)
    assert result.events == [] and sorted(result.ignored) == ["companies.update", "talk.add", "unsorted.add"]


def test_custom_fields_and_tags_become_lead_fields():
    settings = {**SETTINGS, "SLA_GUARD_AMOCRM_FIELD_SOURCE": "Источник", "SLA_GUARD_AMOCRM_FIELD_PRIORITY": "4401"}
    body = form(
        *lead("add", id="101", created_at="1726572000"),
        ("leads[add][0][custom_fields][0][id]", "4400"),
        ("leads[add][0][custom_fields][0][name]", "Источник"),
        ("leads[add][0][custom_fields][0][values][0][value]", "website"),
        ("leads[add][0][custom_fields][1][id]", "4401"),
        ("leads[add][0][custom_fields][1][name]", "Priority"),
        ("leads[add][0][custom_fields][1][values][0][value]", "hot"),
        ("leads[add][0][tags][0][id]", "1"),
        ("leads[add][0][tags][0][name]", "enterprise"),
    )
    event = amocrm.parse(request(body), settings).events[0]
    assert (event.lead.source, event.lead.priority, event.lead.tags) == ("website", "hot", ("enterprise",))


# --- odd encodings and broken bodies ------------------------------------------------------


def test_cyrillic_and_plus_for_spaces():
    body = (
        "leads%5Badd%5D%5B0%5D%5Bid%5D=5"
        "&leads%5Badd%5D%5B0%5D%5Bname%5D=%D0%97%D0%B0%D1%8F%D0%B2%D0%BA%D0%B0+%D1%81+%D1%81%D0%B0%D0%B9%D1%82%D0%B0"
        "&leads%5Badd%5D%5B0%5D%5Bcreated_at%5D=1726572752&account%5Bid%5D=30307558"
    )
    assert amocrm.parse(request(body), SETTINGS).events[0].lead.name == "Заявка с сайта"


def test_windows_1251_body_when_the_content_type_says_so():
    body = (
        urlencode(
            [
                ("leads[add][0][id]", "5"),
                ("leads[add][0][name]", "Заявка"),
                ("leads[add][0][created_at]", "1726572752"),
            ],
            encoding="cp1251",
        )
        + "&account%5Bid%5D=30307558"
    )
    raw = request(body, content_type="application/x-www-form-urlencoded; charset=windows-1251")
    assert amocrm.parse(raw, SETTINGS).events[0].lead.name == "Заявка"
    with pytest.raises(InvalidEvent, match="utf-8"):
        amocrm.parse(request(body), SETTINGS)  # the same bytes declared as UTF-8


def test_missing_lead_id_names_the_field():
    with pytest.raises(InvalidEvent) as error:
        amocrm.parse(request(form(*lead("status", id="", status_id="143", updated_at="1726573000"))), SETTINGS)
    assert error.value.field == "leads[status][0][id]"


@pytest.mark.parametrize("name", AMOCRM_FIXTURES)
def test_truncated_bodies_are_refused_or_read_never_crash(name):
    body = load(name)["request"]["body"]
    for cut in range(1, len(body), 7):
        raw = request(body[:cut])
        try:
            amocrm.verify(raw, SETTINGS, NOW)
        except Unauthorized:
            pass
        try:
            amocrm.parse(raw, SETTINGS)
        except InvalidEvent:
            pass


def test_cut_inside_a_percent_escape_or_a_key_is_malformed():
    body = load("amocrm_lead_status_lost.json")["request"]["body"]
    with pytest.raises(InvalidEvent, match="percent"):
        amocrm.parse(request(body[: body.index("%5D") + 2]), SETTINGS)
    with pytest.raises(InvalidEvent, match="malformed form key"):
        amocrm.parse(request("leads[status][0][status_id]=143&leads[status][0][upd"), SETTINGS)
    with pytest.raises(InvalidEvent, match="status_id"):
        amocrm.parse(
            request("leads%5Bstatus%5D%5B0%5D%5Bid%5D=15318175&leads%5Bstatus%5D%5B0%5D%5Bupdated_at%5D=1726579900"),
            SETTINGS,
        )


def test_a_lead_carries_its_company_as_the_customer():
    fixture = load("amocrm_lead_add.json")
    body = fixture["request"]["body"] + "&" + urlencode({"leads[add][0][linked_company_id]": "3141"})
    raw = fixture_request({**fixture, "request": {**fixture["request"], "body": body}})
    assert amocrm.parse(raw, SETTINGS).events[0].lead.customer == "amocrm:company:3141"
