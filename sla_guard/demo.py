"""``sla-guard demo``: a reproducible month of realistic leads, so a first run shows a living dashboard.

Four sources with their own speed, conversion and spend; two teams of two managers each (one
fast, one slow); leads moving through the ``b2b`` pipeline's stages, now and then backwards, past
a stage, or several stages at once; losses with reasons (some without); repeat customers. The
events go through sla-guard's own inbox and engine, exactly as a CRM's would. Running it again
adds nothing: the event ids are the same.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sla_guard.core.events import LeadEvent
from sla_guard.core.spend import Spend

SEED = 2026
PIPELINE = ("new", "qualification", "proposal", "negotiation")
OWNERS = {"anna": ("inbound", 6), "boris": ("inbound", 40), "kate": ("outbound", 20), "max": ("outbound", 150)}
"""Manager → (team, mean minutes to a first touch)."""

SOURCES = {
    # weight, share of hot leads, chance to win at the end, mean amount, monthly spend
    "website": (40, 0.6, 0.55, 180_000, 300_000),
    "ads": (30, 0.3, 0.35, 120_000, 420_000),
    "referral": (15, 0.5, 0.7, 250_000, 40_000),
    "exhibition": (15, 0.2, 0.45, 400_000, 260_000),
}
REASONS = ("price", "price", "no_budget", "competitor", "no_answer", None)
DEMO_USER = ("demo", "sla-guard-demo")
"""Name and password of the dashboard user ``sla-guard demo`` creates (a head: sees everything)."""


def _event(lead_id: str, n: int, kind: str, at: datetime, **extra) -> LeadEvent:
    lead = {"id": lead_id, **extra.pop("lead", {})}
    return LeadEvent.model_validate(
        {"event_id": f"demo-{lead_id}-{n}", "type": kind, "occurred_at": at.isoformat(), "lead": lead, **extra}
    )


def demo_events(now: datetime, leads: int = 400, seed: int = SEED) -> list[LeadEvent]:
    """Every event of the demo month ending at ``now`` (the same for the same ``now`` and seed)."""
    rnd = random.Random(seed)
    start = now - timedelta(days=30)
    companies = [f"company-{n}" for n in range(1, 41)]
    events: list[LeadEvent] = []
    for i in range(1, leads + 1):
        lead_id = f"D-{i:04d}"
        source = rnd.choices(list(SOURCES), weights=[spec[0] for spec in SOURCES.values()])[0]
        _, hot_share, win_chance, mean_amount, _ = SOURCES[source]
        owner = rnd.choice(list(OWNERS))
        team, touch_minutes = OWNERS[owner]
        created = start + timedelta(seconds=rnd.uniform(0, 30 * 86400 - 3600))
        fields = {
            "name": f"{rnd.choice(['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne'])} #{i}",
            "source": source,
            "pipeline": "b2b",
            "stage": "new",
            "owner": owner,
            "team": team,
            "priority": "hot" if rnd.random() < hot_share else "normal",
            "amount": round(rnd.lognormvariate(0, 0.5) * mean_amount, -3),
            "url": f"https://crm.example/leads/{lead_id}",
            "customer": rnd.choice(companies) if rnd.random() < 0.3 else None,
        }
        n = 0
        events.append(_event(lead_id, n, "lead.created", created, lead={k: v for k, v in fields.items() if v}))
        if rnd.random() < 0.08:
            continue  # never touched
        at = created + timedelta(minutes=rnd.expovariate(1 / touch_minutes))
        if at >= now:
            continue
        n += 1
        events.append(_event(lead_id, n, "lead.touched", at, touch={"channel": "call", "by": owner}))
        stage = 0
        while at < now:
            at += timedelta(hours=rnd.uniform(2, 96))
            if at >= now:
                break
            n += 1
            if rnd.random() > (0.8 if stage < 3 else win_chance + 0.2):
                reason = rnd.choice(REASONS)
                extra = {"reason": reason} if reason else {}
                events.append(_event(lead_id, n, "lead.closed", at, outcome="lost", **extra))
                break
            if stage == 3:
                events.append(_event(lead_id, n, "lead.closed", at, outcome="won"))
                break
            roll = rnd.random()
            if roll < 0.05 and stage > 0:
                stage -= 1  # back to the stage before
            elif roll < 0.10 and stage < 2:
                stage += 2  # a stage skipped
            elif roll < 0.13 and stage < 2:
                events.append(_event(lead_id, n, "lead.stage_changed", at, lead={"stage": PIPELINE[stage + 1]}))
                n, at, stage = n + 1, at + timedelta(seconds=20), stage + 2  # two moves at once
            else:
                stage += 1
            events.append(_event(lead_id, n, "lead.stage_changed", at, lead={"stage": PIPELINE[stage]}))
    return events


def demo_spend(now: datetime) -> list[Spend]:
    months = sorted({(now - timedelta(days=days)).strftime("%Y-%m") for days in (0, 15, 30)})
    return [Spend(month, source, float(spec[4])) for month in months for source, spec in SOURCES.items()]


def seed(runtime, now: datetime, leads: int = 400) -> dict:
    """Store the demo month: events through the inbox and the engine, spend, and the demo user."""
    from sla_guard.dashboard.auth import hash_password
    from sla_guard.ingest.processing import process_lead
    from sla_guard.store.insight import save_user, upsert_spend
    from sla_guard.store.repository import insert_events

    events = demo_events(now, leads)
    with runtime.db.session() as session:
        accepted, _ = insert_events(session, "generic", events, now)
        upsert_spend(session, demo_spend(now), now)
        save_user(session, DEMO_USER[0], hash_password(DEMO_USER[1]), "head", None, "en", now)
    fresh = {event.lead.id for event in events if event.event_id in set(accepted)}
    for lead_id in sorted(fresh):
        process_lead(runtime, lead_id)
    return {"events": len(accepted), "leads": len(fresh)}
