"""Changing the rules while leads are open: reload, recompute open clocks, never repeat an alert."""

from datetime import timedelta

from sqlalchemy import select

from sla_guard.runtime import RulesHolder
from sla_guard.store.models import ClockRow, EscalationRow, RuleVersionRow
from sla_guard.timers.reconciler import reconcile
from tests.support.firing import run_timer

HOT = {"source": "website", "priority": "hot", "owner": "anna", "team": "inbound"}


def rows(runtime, model):
    with runtime.db.session() as session:
        return session.execute(select(model)).scalars().all()


def first_touch(runtime) -> ClockRow:
    return next(row for row in rows(runtime, ClockRow) if row.name == "first_touch")


def test_the_api_shows_and_reloads_the_rules(client, rules_path, auth):
    before = client.get("/api/rules", headers=auth).get_json()
    assert before["rules"] == ["hot website leads", "everything else"]
    rules_path.write_text(rules_path.read_text().replace("within: 15m", 'within: "15 minutes"'))
    refused = client.post("/api/rules/reload", headers=auth)
    assert refused.status_code == 422
    assert refused.get_json()["version"] == before["version"]
    assert refused.get_json()["errors"] == [
        {"path": "rules[0].first_touch.within", "message": '"15 minutes" is not a duration; use 15m'}
    ]
    assert client.get("/api/rules", headers=auth).get_json()["version"] == before["version"]
    rules_path.write_text(rules_path.read_text().replace('within: "15 minutes"', "within: 30m"))
    done = client.post("/api/rules/reload", headers=auth).get_json()
    assert (done["previous_version"], done["changed"]) == (before["version"], True)
    history = client.get("/api/rules", headers=auth).get_json()["history"]
    assert done["version"] in [item["version"] for item in history]
    assert client.post("/api/rules/reload").status_code == 401


def test_sighup_forces_a_reload(rules_path):
    holder = RulesHolder(str(rules_path), check_every_s=3600)
    old = holder.current().version
    rules_path.write_text(rules_path.read_text().replace("within: 2h", "within: 3h"))
    assert holder.current().version == old  # not checked yet
    holder.request_reload()
    assert holder.current().version != old


def test_open_clocks_are_recomputed_and_sent_alerts_are_not_repeated(
    app, client, runtime, clock, rules_path, event, post_signed, run_worker
):
    start = clock()
    post_signed(client, event("e1", "lead.created", start, lead=HOT), start)
    run_worker(runtime)
    clock.advance(minutes=12)
    run_timer(runtime, first_touch(runtime).id)
    assert [(e.level, e.kind) for e in rows(runtime, EscalationRow)] == [(0, "first_touch.warning")]
    old_version = runtime.rules.current().version

    rules_path.write_text(rules_path.read_text().replace("within: 15m", "within: 30m"))
    runtime.rules.request_reload()
    assert reconcile(runtime).leads_recomputed == 1
    run_worker(runtime)
    row = first_touch(runtime)
    assert (row.due_at, row.started_at) == (start + timedelta(minutes=30), start)
    assert row.rule_version == runtime.rules.current().version != old_version
    assert row.next_fire_at == start + timedelta(minutes=30)  # the warning was sent already: not again
    assert reconcile(runtime).leads_recomputed == 0
    with runtime.db.session() as session:
        versions = set(session.execute(select(RuleVersionRow.version)).scalars())
    assert runtime.rules.current().version in versions


def test_finished_clocks_keep_the_rule_they_were_judged_by(
    app, client, runtime, clock, rules_path, event, post_signed, run_worker
):
    start = clock()
    post_signed(
        client,
        [
            event("e1", "lead.created", start, lead=HOT),
            event("e2", "lead.touched", start + timedelta(minutes=20), touch={"channel": "call"}),
        ],
        start,
    )
    run_worker(runtime)
    before = first_touch(runtime)
    rules_path.write_text(rules_path.read_text().replace("within: 15m", "within: 30m"))
    runtime.rules.request_reload()
    reconcile(runtime)
    post_signed(client, event("e3", "lead.updated", start + timedelta(minutes=40), lead={"name": "ACME"}), start)
    run_worker(runtime)
    after = first_touch(runtime)
    assert (after.due_at, after.rule_version, after.stopped_at) == (
        before.due_at,
        before.rule_version,
        before.stopped_at,
    )
    assert after.stopped_at > after.due_at  # still a missed SLA


def test_a_clock_whose_rule_is_gone_ends_with_the_reason(
    app, client, runtime, clock, rules_path, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    text = rules_path.read_text()
    rules_path.write_text(
        text[: text.index("  - name: hot website leads")]
        + "  - name: phone only\n    match: {source: phone}\n    first_touch: {within: 1h}\n"
    )
    runtime.rules.request_reload()
    reconcile(runtime)
    run_worker(runtime)
    row = first_touch(runtime)
    assert (row.stop_reason, row.next_fire_at) == ("rule_removed", None)
