"""The data of ``python -m bench reports``: a year of leads made inside PostgreSQL, set-based.

One ``generate_series`` pass draws every lead's dice into a temporary table (``setseed`` makes a
run reproducible); leads, first-touch clocks, stage stays and inbox events are then each one
``INSERT … SELECT`` from it, with no join and no per-row look-up. Foreign-key triggers are off
for the session while loading and the inbox's indexes are built after its rows, with a larger
``maintenance_work_mem`` (session settings only).

The shape: five sources (uneven), two pipelines (``b2b`` with four stages, ``smb`` with three),
forty managers in four teams plus some unassigned leads, first touches from seconds to days and
10 % never touched, stays that skip a stage, go back one, or are filled in after the fact within
seconds, losses with five reasons (and some without), repeat customers, monthly spend per source,
and five events per lead.

A seeded database records what it holds in ``bench_seed``; a later run may reuse it as is.
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import text

SOURCES = (("website", 0.35), ("ads", 0.30), ("referral", 0.15), ("exhibition", 0.10), ("partner", 0.10))
"""Sources with their share of leads."""

PIPELINES = {"b2b": ("new", "qualification", "proposal", "negotiation"), "smb": ("new", "demo", "contract")}

RULES = """timezone: Europe/Moscow
pipelines:
  b2b: [new, qualification, proposal, negotiation]
  smb: [new, demo, contract]
rules:
  - name: hot
    match: {priority: hot}
    first_touch: {within: 5m}
  - name: all
    first_touch: {within: 15m}
"""
"""The rules file the web process is started with (the funnel's stage order comes from it)."""

SPEND = {"website": 3e6, "ads": 4e6, "referral": 4e5, "exhibition": 2e6, "partner": 1e6}
"""Monthly spend per source."""


def _source_case() -> str:
    parts, edge = [], 0.0
    for name, share in SOURCES[:-1]:
        edge += share
        parts.append(f"WHEN r_source < {edge:.2f} THEN '{name}'")
    return "CASE " + " ".join(parts) + f" ELSE '{SOURCES[-1][0]}' END"


DICE_SQL = f"""
CREATE TEMPORARY TABLE bench_dice ON COMMIT DROP AS
SELECT g, created, source, pipeline, owner, team, priority, status, touch_s, amount, customer, reason,
       stages, furthest, skip, back, bulk,
       CASE WHEN status <> 'open' THEN created + (2 + r_close * 40) * interval '1 day' END AS closed_at
FROM (
  SELECT g, created, {_source_case()} AS source, pipeline,
         CASE WHEN r_owner < 0.02 THEN NULL ELSE 'm' || (g % 40) END AS owner,
         CASE WHEN r_owner < 0.02 THEN NULL ELSE 't' || (g % 40 / 10 + 1) END AS team,
         CASE WHEN g % 5 = 0 THEN 'hot' ELSE 'normal' END AS priority,
         -- older leads are more often closed; about a quarter of closed leads are won
         CASE WHEN r_status * 400 > age_days + 40 THEN 'open' WHEN r_won < 0.27 THEN 'won' ELSE 'lost' END AS status,
         CASE WHEN r_touch < 0.10 THEN NULL ELSE 5 + power(r_touch_s, 6) * 172800 END AS touch_s,
         round((1000 + power(r_amount, 2) * 500000)::numeric, -2)::float AS amount,
         CASE WHEN g % 3 = 0 THEN 'c' || (g % 60000) END AS customer,
         (ARRAY['price', 'no_budget', 'competitor', 'no_answer', 'timing', NULL])[1 + floor(r_reason * 6)::int] AS reason,
         CASE pipeline WHEN 'b2b' THEN ARRAY['new', 'qualification', 'proposal', 'negotiation']
                       ELSE ARRAY['new', 'demo', 'contract'] END AS stages,
         r_stage, r_close, r_touch, r_skip < 0.08 AS skip, r_skip > 0.96 AS back, r_bulk < 0.07 AS bulk,
         CASE WHEN pipeline = 'b2b' THEN floor(r_stage * 4)::int ELSE floor(r_stage * 3)::int END AS furthest
  FROM (
    SELECT g, r_source, r_owner, r_status, r_won, r_touch, r_touch_s, r_amount, r_reason, r_stage, r_close,
           r_skip, r_bulk, CASE WHEN r_pipeline < 0.7 THEN 'b2b' ELSE 'smb' END AS pipeline,
           CAST(:now AS timestamptz) - age_days * interval '1 day' AS created, age_days
    FROM (SELECT g, random() AS r_source, random() AS r_owner, random() AS r_status, random() AS r_won,
                 random() AS r_touch, random() AS r_touch_s, random() AS r_amount, random() AS r_reason,
                 random() AS r_stage, random() AS r_close, random() AS r_skip, random() AS r_bulk,
                 random() AS r_pipeline,
                 -- lead g is created after lead g - 1, as a CRM numbers them
                 365.0 * (CAST(:last AS integer) - g + random()) / CAST(:last AS integer) AS age_days
          FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g) AS raw
  ) AS drawn
) AS lead
"""

LEADS_SQL = """
INSERT INTO leads (lead_id, name, source, pipeline, stage, owner, team, priority, amount, url, status, known,
                   created_at, first_touch_at, closed_at, outcome, reason, rule_name, rule_version,
                   last_event_at, updated_at, customer)
SELECT 'B-' || g, 'Lead ' || g, source, pipeline, stages[furthest + 1], owner, team, priority, amount,
       'https://crm.example/leads/' || g, status, true, created,
       created + touch_s * interval '1 second', closed_at, CASE WHEN status <> 'open' THEN status END,
       CASE WHEN status = 'lost' THEN reason END, CASE WHEN priority = 'hot' THEN 'hot' ELSE 'all' END, 'bench',
       COALESCE(closed_at, created), CAST(:now AS timestamptz), customer
FROM bench_dice ORDER BY g
"""

CLOCKS_SQL = """
INSERT INTO clocks (lead_id, name, cycle, rule_name, rule_version, started_at, due_at, stopped_at, stop_reason,
                    paused_at, budget_used_s)
SELECT 'B-' || g, 'first_touch', 0, CASE WHEN priority = 'hot' THEN 'hot' ELSE 'all' END, 'bench', created,
       created + CASE WHEN priority = 'hot' THEN interval '5 minutes' ELSE interval '15 minutes' END,
       CASE WHEN touch_s IS NOT NULL THEN created + touch_s * interval '1 second' ELSE closed_at END,
       CASE WHEN touch_s IS NOT NULL THEN 'touched' WHEN closed_at IS NOT NULL THEN 'closed' END,
       CASE WHEN touch_s IS NULL AND closed_at IS NULL AND g % 7 = 0 THEN created + interval '1 minute' END, 0
FROM bench_dice ORDER BY g
"""

# one stay per position walked: 0..furthest, with position 1 left out when the lead skipped it and
# one extra stay (back to the previous stage, then forward again) when it went back
STAYS_SQL = """
INSERT INTO stage_stays (lead_id, seq, stage, entered_at, left_at, left_how, next_stage)
SELECT 'B-' || g, seq, stages[pos + 1], entered,
       CASE WHEN seq < last_seq THEN next_entered WHEN status <> 'open' THEN GREATEST(closed_at, entered) END,
       CASE WHEN seq < last_seq THEN 'moved' WHEN status <> 'open' THEN status END,
       CASE WHEN seq < last_seq THEN stages[next_pos + 1] END
FROM (
  SELECT g, stages, status, closed_at, pos, seq, last_seq, entered,
         lead(pos) OVER w AS next_pos, lead(entered) OVER w AS next_entered
  FROM (
    SELECT d.g, d.stages, d.status, d.closed_at, p.pos,
           row_number() OVER (PARTITION BY d.g ORDER BY p.step) - 1 AS seq,
           count(*) OVER (PARTITION BY d.g) - 1 AS last_seq,
           d.created + p.step * CASE WHEN d.bulk THEN interval '20 seconds' ELSE interval '2 days' END AS entered
    FROM bench_dice AS d
    CROSS JOIN LATERAL (
      SELECT s AS step, s AS pos FROM generate_series(0, d.furthest) AS s WHERE NOT (d.skip AND s = 1 AND d.furthest > 1)
      UNION ALL
      SELECT d.furthest + 1, d.furthest - 1 WHERE d.back AND d.furthest > 0
      UNION ALL
      SELECT d.furthest + 2, d.furthest WHERE d.back AND d.furthest > 0
    ) AS p
  ) AS walked
  WINDOW w AS (PARTITION BY g ORDER BY seq)
) AS stay
ORDER BY g, seq
"""

EVENTS_SQL = """
INSERT INTO events (source, event_id, lead_id, type, occurred_at, received_at, payload, processed_at)
SELECT 'generic', 'B-' || g || '-' || n, 'B-' || g, t, created + n * interval '1 hour', created + n * interval '1 hour',
       json_build_object('event_id', 'B-' || g || '-' || n, 'type', t,
                         'occurred_at', to_char(created + n * interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                         'lead', json_build_object('id', 'B-' || g, 'source', source, 'owner', owner,
                                                   'pipeline', pipeline))::text,
       CAST(:now AS timestamptz)
FROM bench_dice
CROSS JOIN (VALUES (0, 'lead.created'), (1, 'lead.touched'), (2, 'lead.stage_changed'),
                   (3, 'lead.stage_changed'), (4, 'lead.closed')) AS e(n, t)
ORDER BY g, n
"""

EVENT_INDEXES = {
    "uq_events_source_event_id": "CREATE UNIQUE INDEX uq_events_source_event_id ON events (source, event_id)",
    "ix_events_lead_occurred": "CREATE INDEX ix_events_lead_occurred ON events (lead_id, occurred_at)",
    "ix_events_processed_received": "CREATE INDEX ix_events_processed_received ON events (processed_at, received_at)",
}

SEED_TABLE = "CREATE TABLE bench_seed (leads integer NOT NULL, seeded_at timestamptz NOT NULL, shape text NOT NULL)"

SHAPE = "2"
"""Raised whenever the data made here changes, so an older kept database is not reused."""


def seeded(engine) -> tuple[int, datetime] | None:
    """``(leads, now)`` the database was seeded with, or None when it holds no finished seed."""
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT to_regclass('bench_seed') IS NOT NULL")).scalar_one()
        if not exists:
            return None
        row = connection.execute(text("SELECT * FROM bench_seed")).first()
    return (row.leads, row.seeded_at) if row and getattr(row, "shape", None) == SHAPE else None


def seed(engine, leads: int, now: datetime) -> dict[str, float]:
    """``leads`` leads created over the year before ``now`` with everything they carry; seconds per part."""
    took: dict[str, float] = {}
    params = {"first": 1, "last": leads, "now": now}

    def timed(name: str, connection, sql: str) -> None:
        began = time.monotonic()
        connection.execute(text(sql), params)
        took[name] = took.get(name, 0.0) + time.monotonic() - began

    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))  # no FK triggers while loading
        connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        connection.execute(text("SELECT setseed(0.42)"))
        timed("dice", connection, DICE_SQL)
        timed("leads", connection, LEADS_SQL)
        timed("clocks", connection, CLOCKS_SQL)
        timed("stage stays", connection, STAYS_SQL)
        connection.execute(text("ALTER TABLE events DROP CONSTRAINT IF EXISTS uq_events_source_event_id"))
        for name in EVENT_INDEXES:
            connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
        timed("events", connection, EVENTS_SQL)
        for sql in EVENT_INDEXES.values():
            timed("event indexes", connection, sql)
        connection.execute(
            text(
                "ALTER TABLE events ADD CONSTRAINT uq_events_source_event_id UNIQUE USING INDEX uq_events_source_event_id"
            )
        )
        began = time.monotonic()
        months = [
            row[0] for row in connection.execute(text("SELECT DISTINCT to_char(created_at, 'YYYY-MM') FROM leads"))
        ]
        connection.execute(
            text("INSERT INTO spend (month, source, amount, updated_at) VALUES (:m, :s, :a, :now)"),
            [{"m": m, "s": s, "a": a, "now": now} for m in months for s, a in SPEND.items()],
        )
        connection.execute(text(SEED_TABLE))
        connection.execute(
            text("INSERT INTO bench_seed VALUES (:leads, :now, :shape)"), {"leads": leads, "now": now, "shape": SHAPE}
        )
        took["spend"] = time.monotonic() - began
    began = time.monotonic()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("leads", "clocks", "stage_stays", "events", "spend"):
            connection.execute(text(f"VACUUM (ANALYZE) {table}"))
    took["vacuum analyze"] = time.monotonic() - began
    return took
