"""Stage history and the funnel report, against hand-computed stays, on both databases."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, insert, inspect, select

from sla_guard.cli import main
from sla_guard.core.events import LeadEvent
from sla_guard.core.stays import Stay, stage_stays
from sla_guard.store.migrate import alembic_config, upgrade
from sla_guard.store.models import EventRow, StageStayRow

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _events(*items) -> list[LeadEvent]:
    return [LeadEvent.model_validate(item) for item in items]


def test_stays_follow_moves_closures_and_reopening(event):
    stays = stage_stays(
        _events(
            event("a", "lead.created", T, lead={"stage": "new"}),
            event("b", "lead.updated", T + H, lead={"stage": "new", "owner": "anna"}),  # same stage: no move
            event("c", "lead.stage_changed", T + 2 * H, lead={"stage": "qualification"}),
            event("d", "lead.closed", T + 3 * H, outcome="lost", reason="price"),
            event("e", "lead.updated", T + 4 * H, lead={"stage": "proposal"}),  # a closed lead stays closed
            event("f", "lead.stage_changed", T + 5 * H, lead={"stage": "qualification"}),  # reopened
        )
    )
    assert stays == [
        Stay(0, "new", T, T + 2 * H, "moved", "qualification"),
        Stay(1, "qualification", T + 2 * H, T + 3 * H, "lost"),
        Stay(2, "qualification", T + 5 * H),
    ]
    assert stage_stays(_events(event("a", "lead.created", T, lead={"owner": "anna"}))) == []


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        pipelines:
          b2b: [new, qualification, proposal, negotiation]
        rules:
          - name: everything
            first_touch: {within: 2h}
    """)


@pytest.fixture
def funnel(client, runtime, clock, event, post_signed, run_worker):
    """F1 new→qualification→proposal→won; F2 new→proposal (skips one)→lost; F3 new→qualification→
    new (back)→qualification; F4 new→qualification→proposal within 40 s (bulk), then negotiation;
    F5 is in another pipeline."""
    c = clock() - timedelta(days=5)
    s = timedelta(seconds=1)

    def move(eid, lead, at, stage):
        return event(eid, "lead.stage_changed", at, lead_id=lead, lead={"stage": stage})

    def created(eid, lead, pipeline="b2b"):
        return event(eid, "lead.created", c, lead_id=lead, lead={"stage": "new", "pipeline": pipeline})

    events = [
        created("1c", "F1"),
        move("1a", "F1", c + H, "qualification"),
        move("1b", "F1", c + 3 * H, "proposal"),
        event("1w", "lead.closed", c + 5 * H, lead_id="F1", outcome="won"),
        created("2c", "F2"),
        move("2a", "F2", c + 2 * H, "proposal"),
        event("2l", "lead.closed", c + 4 * H, lead_id="F2", outcome="lost", reason="price"),
        created("3c", "F3"),
        move("3a", "F3", c + H / 2, "qualification"),
        move("3b", "F3", c + H, "new"),
        move("3d", "F3", c + 2 * H, "qualification"),
        created("4c", "F4"),
        move("4a", "F4", c + 10 * s, "qualification"),
        move("4b", "F4", c + 40 * s, "proposal"),
        move("4d", "F4", c + 24 * H, "negotiation"),
        created("5c", "F5", pipeline="retail"),
        move("5a", "F5", c + H, "qualification"),
    ]
    assert post_signed(client, events, clock()).status_code == 202
    run_worker(runtime)


def test_funnel_every_field(client, funnel, auth):
    report = client.get("/api/reports/funnel?pipeline=b2b", headers=auth).get_json()
    assert report["pipeline"] == "b2b"
    assert report["rows"] == [
        {
            "stage": "new",
            "entered": 4,
            "advanced": 4,
            "conversion": 1.0,
            "lost_here": 0,
            "time_in_stage_p50_s": 3600.0,
            "time_in_stage_p90_s": 7200.0,
        },
        {
            "stage": "qualification",
            "entered": 3,
            "advanced": 2,
            "conversion": 0.6667,
            "lost_here": 0,
            "time_in_stage_p50_s": 1800.0,
            "time_in_stage_p90_s": 7200.0,
        },
        {
            "stage": "proposal",
            "entered": 3,
            "advanced": 2,
            "conversion": 0.6667,
            "lost_here": 1,
            "time_in_stage_p50_s": 7200.0,
            "time_in_stage_p90_s": 86360.0,
        },
        {
            "stage": "negotiation",
            "entered": 1,
            "advanced": 0,
            "conversion": 0.0,
            "lost_here": 0,
            "time_in_stage_p50_s": None,
            "time_in_stage_p90_s": None,
        },
    ]
    assert report["transitions"] == [
        {"from": "new", "to": "qualification", "count": 4},
        {"from": "qualification", "to": "proposal", "count": 2},
        {"from": "new", "to": "proposal", "count": 1},
        {"from": "qualification", "to": "new", "count": 1},
        {"from": "proposal", "to": "negotiation", "count": 1},
    ]
    assert (report["backward_moves"], report["skipped_stages"], report["bulk_moves"]) == (1, 1, 1)
    # the first pipeline of the rules file is the default; another pipeline is counted apart
    assert client.get("/api/reports/funnel", headers=auth).get_json()["rows"] == report["rows"]
    retail = client.get("/api/reports/funnel?pipeline=retail", headers=auth).get_json()
    assert [(row["stage"], row["entered"], row["advanced"]) for row in retail["rows"]] == [
        ("new", 1, 1),
        ("qualification", 1, 0),
    ]
    csv_text = client.get("/api/reports/funnel?pipeline=b2b&format=csv", headers=auth).get_data(as_text=True)
    assert csv_text.splitlines()[1] == "new,4,4,1.0,0,3600.0,7200.0"


def test_rules_check_validates_pipelines_and_explain_shows_them(runner, tmp_path, event):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines:\n  b2b: [new, won, new]\n  empty: []\nrules: []\n")
    result = runner.invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 2
    assert "pipelines" in result.output and "new more than once" in result.output
    good = tmp_path / "good.yaml"
    good.write_text(
        "pipelines:\n  b2b: [new, qualification, proposal]\nrules:\n  - {name: all, first_touch: {within: 1h}}\n"
    )
    assert runner.invoke(main, ["rules", "check", str(good)]).exit_code == 0
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps(event("e1", "lead.created", T, lead={"pipeline": "b2b", "stage": "qualification"})))
    result = runner.invoke(main, ["rules", "explain", str(good), str(lead)])
    assert result.exit_code == 0, result.output
    assert "pipeline b2b: new → qualification → proposal (lead is in qualification, stage 2 of 3)" in result.output


def test_the_migration_fills_in_stays_from_stored_events(db_url, funnel, event):
    """Events stored before stage history existed get their stays when the schema is upgraded."""
    engine = create_engine(db_url)
    with engine.begin() as connection:
        expected = connection.execute(select(StageStayRow.__table__).order_by("lead_id", "seq")).all()
    assert len(expected) == 15
    engine.dispose()
    command.downgrade(alembic_config(db_url), "0008_lead_ids_with_source")
    engine = create_engine(db_url)
    with engine.begin() as connection:
        assert "stage_stays" not in inspect(connection).get_table_names()
        connection.execute(  # an event whose lead was never applied gets no stays
            insert(EventRow.__table__).values(
                source="generic",
                event_id="orphan",
                lead_id="never-applied",
                type="lead.created",
                occurred_at=T,
                received_at=T,
                payload=LeadEvent.model_validate(event("x", "lead.created", T, lead={"stage": "new"})).to_json(),
            )
        )
    engine.dispose()
    upgrade(db_url)
    engine = create_engine(db_url)
    with engine.begin() as connection:
        assert connection.execute(select(StageStayRow.__table__).order_by("lead_id", "seq")).all() == expected
    engine.dispose()


def test_a_funnel_without_stays_is_empty(client, auth):
    report = client.get("/api/reports/funnel?pipeline=b2b", headers=auth).get_json()
    assert [row["entered"] for row in report["rows"]] == [0, 0, 0, 0]
    other = client.get("/api/reports/funnel?pipeline=none-such", headers=auth).get_json()
    assert (other["rows"], other["transitions"], other["bulk_moves"]) == ([], [], 0)
