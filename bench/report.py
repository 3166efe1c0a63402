"""The Markdown report: summary against the targets, machine facts, each phase's settings and
tables, how to read them, and how to reproduce them."""

from __future__ import annotations

import os

from .context import Bench


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _not_armed(progress: dict) -> str:
    return (
        f"**no** (at the first deadline {progress['unprocessed']:,} events were unprocessed, "
        f"{progress['open_clocks']:,} clocks open, {progress['queued']:,} processing jobs queued)"
    )


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _bytes(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _per(total: int, count: int) -> str:
    return f"{total / count:.0f}" if count else "–"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_rows(ingest: dict | None, lateness: dict | None, reconciler: dict | None = None) -> list[list[str]]:
    rows = []
    if ingest:
        ratio, p99 = ingest["ratio"], ingest["sla_guard"]["latency_ms"]["p99"]
        errors = ingest["sla_guard"]["error_count"] + ingest["bare"]["error_count"]
        rows += [
            [
                "ingest throughput on PostgreSQL with a worker, sla-guard ÷ bare Flask",
                f"{ratio:.2f}×",
                "≥ 0.6×",
                _verdict(ratio >= 0.6),
            ],
            [
                "ingest p99 time to 202 (PostgreSQL)",
                f"{_ms(p99)} ms",
                "< 50 ms",
                _verdict(p99 is not None and p99 < 50),
            ],
        ]
        lite = ingest.get("sqlite")
        if lite:
            lite_ratio, lite_p99 = ingest["sqlite_ratio"], lite["latency_ms"]["p99"]
            errors += lite["error_count"]
            rows += [
                [
                    "ingest throughput on SQLite (default) with a worker, ÷ bare Flask",
                    f"{lite_ratio:.2f}×",
                    "≥ 0.3×",
                    _verdict(lite_ratio >= 0.3),
                ],
                [
                    "ingest p99 time to 202 (SQLite)",
                    f"{_ms(lite_p99)} ms",
                    "< 50 ms",
                    _verdict(lite_p99 is not None and lite_p99 < 50),
                ],
            ]
        for name, result in (("PostgreSQL", ingest["sla_guard"]), ("SQLite", lite)):
            if result and result.get("events_stored"):
                kept_up = result["events_applied"] / result["events_stored"]
                rows.append(
                    [
                        f"events applied by one worker ÷ accepted by the web, during the load ({name})",
                        f"{result['events_applied']:,} ÷ {result['events_stored']:,} = {kept_up:.2f}",
                        "keeps up (≈ 1)",
                        _verdict(kept_up >= 0.9),
                    ]
                )
        rows.append(["ingest errors (non-202, all targets)", str(errors), "0", _verdict(errors == 0)])
    if lateness:
        late, memory = lateness["lateness_s"], lateness["memory"]
        per_open = memory["timer_set_bytes"] / max(memory["open_clocks"], 1)
        per_armed = memory["timer_set_bytes"] / max(memory["timers_armed"], 1)
        p50, p99 = late["p50"], late["p99"]
        rows += [
            [
                f"alert lateness p50 with {memory['open_clocks']:,} open clocks, backlog being applied",
                f"{_s(p50)} s",
                "≤ 0.3 s",
                _verdict(p50 is not None and p50 <= 0.3),
            ],
            ["alert lateness p99 (same run)", f"{_s(p99)} s", "≤ 1.0 s", _verdict(p99 is not None and p99 <= 1.0)],
            ["alert lateness max (same run)", f"{_s(late['max'])} s", "–", "–"],
            [
                "alerts received ÷ expected",
                f"{lateness['received']} ÷ {lateness['expected']}",
                "all",
                _verdict(lateness["received"] == lateness["expected"]),
            ],
            ["duplicate alerts", str(lateness["duplicates"]), "0", _verdict(lateness["duplicates"] == 0)],
            ["alerts before their deadline", str(lateness["early"]), "0", _verdict(lateness["early"] == 0)],
            [
                "Redis memory per open clock (timer set, `MEMORY USAGE`) · per armed clock",
                f"{per_open:.1f} B · {per_armed:.0f} B",
                "≤ 100 B",
                _verdict(per_open <= 100),
            ],
        ]
        exits = sum(len(state["exits"]) for state in lateness["workers"].values())
        rows.append(["`sla-guard worker` exits during the phase (restarted)", str(exits), "0", _verdict(exits == 0)])
    if reconciler:
        steady = max(one["seconds"] for one in reconciler["passes"][1:] or reconciler["passes"])
        first = reconciler["passes"][0]["seconds"]
        rows.append(
            [
                f"reconciler pass over {reconciler['settings']['clocks']:,} open clocks: steady · first (arms all)",
                f"{steady:.2f} s · {first:.2f} s",
                "< 5 s",
                _verdict(max(steady, first) < 5),
            ]
        )
    return rows


def ingest_section(ingest: dict) -> list[str]:
    s, bare, sla = ingest["settings"], ingest["bare"], ingest["sla_guard"]
    lines = [
        "## 1. Ingest: signed generic webhooks",
        "",
        f"gunicorn workers (threaded, as `sla-guard serve` runs them): {s['web_workers']} for both targets, with the options of `sla-guard serve` "
        f"(`sla_guard.web.server.gunicorn_options`). Load: one generator process (`bench/load.py`), "
        f"{s['concurrency']} concurrent connections, a new TCP connection per request (`Connection: close`), "
        f"{s['warmup_s']:g} s warm-up (sent, not counted), then {s['duration_s']:g} s measured. Each request is a "
        f"distinct signed event (own `event_id`, {s['leads']:,} leads, lifecycle event types), signed just before "
        f"it is sent; all targets get the same bodies in the same order. sla-guard runs as in production, with "
        f"one `sla-guard worker` applying the events during the load, on PostgreSQL and then on the default "
        f"SQLite file: the 202 comes after the commit (shared by the concurrent requests of a web process) and "
        f"after the lead is handed to the workers through Redis.",
        "",
    ]
    rows = []
    targets = [("bare Flask (`bench/bare_app.py`)", bare), ("`sla-guard serve` on PostgreSQL", sla)]
    if ingest.get("sqlite"):
        targets.append(("`sla-guard serve` on SQLite (WAL)", ingest["sqlite"]))
    for name, result in targets:
        latency = result["latency_ms"]
        errors = ", ".join(f"{key}: {value}" for key, value in sorted(result["errors"].items())) or "none"
        rows.append(
            [
                name,
                f"{result['requests']:,}",
                f"{result['accepted_rps']:.0f}",
                _ms(latency["p50"]),
                _ms(latency["p95"]),
                _ms(latency["p99"]),
                _ms(latency["max"]),
                f"{result['error_count']} ({errors})",
            ]
        )
    header = ["target", "requests measured", "accepted/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"]
    lines += _table(header, rows)
    lines += [
        "",
        f"- Ratio sla-guard ÷ bare: **{ingest['ratio']:.2f}×** on PostgreSQL"
        + (f", **{ingest['sqlite_ratio']:.2f}×** on SQLite." if ingest.get("sqlite") else "."),
        *[
            f"- sla-guard on {result['database']}: {result['warmup_accepted'] + result['accepted']:,} requests "
            f"answered 202 (warm-up included), {result['events_stored']:,} events stored, "
            f"{result['events_applied']:,} of them applied by the worker by the end of the load; "
            f"{_count(result['queue_keys_removed'], 'Redis key')} of its queue removed afterwards."
            for result in (sla, ingest.get("sqlite"))
            if result
        ],
        f"- The load generator used {bare['generator_cpu_share']:.0%} of one core against the baseline and "
        f"{sla['generator_cpu_share']:.0%} against sla-guard (it shares the {os.cpu_count()} cores with the server).",
    ]
    lines += ["", *cpu_table(bare, sla)]
    if sla.get("redis_flushes_by_others"):
        lines.append(
            f"- **Another Redis client ran FLUSHALL/FLUSHDB {sla['redis_flushes_by_others']} times during the "
            f"sla-guard measurement.**"
        )
    lines.append("")
    return lines


def worker_lines(workers: dict[str, dict]) -> list[str]:
    """One line per worker: its exits during the phase, and what it logged when quitting."""
    lines = []
    for name, state in workers.items():
        if not state["exits"]:
            lines.append(f"  - `{name}` ran the whole phase without exiting.")
            continue
        times = ", ".join(f"{exit['after_s']:g} s" for exit in state["exits"])
        said = "; ".join(f"“{message}”" for message in state["quit_messages"]) or "nothing"
        lines.append(
            f"  - `{name}` **exited {len(state['exits'])} times** (exit codes "
            f"{sorted({exit['code'] for exit in state['exits']})}; at {times} after the first post), "
            f"logging {said}; the benchmark restarted it each time, as `restart: unless-stopped` does."
        )
    return lines


def cpu_table(bare: dict, sla: dict) -> list[str]:
    """CPU used during the measured window by each group of processes, and per accepted request."""
    groups = (
        ("server under test (gunicorn master and workers)", "server"),
        ("PostgreSQL", "PostgreSQL"),
        ("Redis", "Redis"),
        ("load generator", "load generator"),
        ("other processes on the machine", "other"),
        ("whole machine", "machine"),
    )
    rows = [[label, f"{bare['cpu_cores'][key]:.2f}", f"{sla['cpu_cores'][key]:.2f}"] for label, key in groups]
    for label, keys in (
        ("server CPU per accepted request", ("server",)),
        ("server + PostgreSQL + Redis CPU per accepted request", ("server", "PostgreSQL", "Redis")),
    ):
        rows.append(
            [label]
            + [
                f"{1000 * sum(result['cpu_cores'][key] for key in keys) / result['accepted_rps']:.2f} ms"
                if result["accepted_rps"]
                else "–"
                for result in (bare, sla)
            ]
        )
    return [
        f"CPU during the measured window, in cores (the machine has {os.cpu_count()}):",
        "",
        *_table(["", "bare Flask", "sla-guard"], rows),
    ]


def lateness_section(late: dict) -> list[str]:
    s, memory, bulk = late["settings"], late["memory"], late["bulk"]
    backlog = ", ".join(f"{events:,} at {at:+.0f} s" for at, events in bulk["backlog"])
    lines = [
        "## 2. Alert lateness with many open clocks, while a backlog is applied",
        "",
        f"A fresh PostgreSQL database first gets {s['open_clocks']:,} open clocks due 20–60 minutes later, written "
        f"by SQL in {late['fill_s']:.1f} s. Then {s['clocks']:,} probe leads are created through "
        f"`POST /webhooks/generic` in signed arrays of {s['batch']} ({s['post_threads']} senders) to `sla-guard serve` "
        f"({s['web_workers']} gunicorn workers), processed by {s['workers']} `sla-guard worker` processes "
        f"(`SLA_GUARD_RECONCILE_INTERVAL_S={s['reconcile_interval_s']:g}`, other settings default). Rule: 24/7, "
        f"`first_touch: {{within: {s['within_s']}s, escalate: [{{after: 0s, notify: [sink]}}]}}`, `sink` a webhook "
        f"channel pointing at a local threaded HTTP receiver. The probes' `occurred_at` put their deadlines "
        f"uniformly over {s['window_s']:g} s starting {s['lead_s']:.0f} s after the first post. From 5 s before the "
        f"first deadline, {s['bulk']:,} more creations (deadlines after the window) are posted by "
        f"{s['bulk_threads']} senders as fast as they go, so the workers apply a backlog while the probes fall due. "
        f"Lateness = arrival at the receiver − `due_at`.",
        "",
        f"- Probes: posted in {late['posting_s']:.1f} s ({late['accepted']:,} accepted); all processed and armed "
        f"{late['processing_s']:.1f} s after the first post; every probe armed before the first deadline: "
        f"{'yes' if late['armed_before_first_deadline'] else _not_armed(late['progress_at_first_deadline'])}.",
        f"- Bulk during the window: {bulk['accepted']:,} creations accepted in {bulk['posting_s']:.1f} s"
        f"{'' if not bulk['error'] else ' (**sender error: ' + bulk['error'] + '**)'}; events waiting to be applied "
        f"(time from the first deadline): {backlog}.",
        f"- Redis: the timer sorted set held {memory['timers_armed']:,} armed clocks in {memory['timer_set_bytes']:,} B "
        f"(`MEMORY USAGE`) for {memory['open_clocks']:,} open clocks once the probes were armed: "
        f"**{memory['timer_set_bytes'] / max(memory['open_clocks'], 1):.1f} B per open clock**, "
        f"{memory['timer_set_bytes'] / max(memory['timers_armed'], 1):.0f} B per armed clock (only clocks due "
        f"within the arming horizon are in Redis); at the end {memory['timers_armed_end']:,} armed, "
        f"{memory['timer_set_bytes_end']:,} B for {memory['open_clocks_end']:,} open clocks. Scheduled RQ jobs: "
        f"{memory['timers_scheduled']:,}. Server-wide `used_memory` moved by {memory['delta']:+,} B (other clients "
        f"of the shared Redis move it too).",
        f"- Alerts: {late['received']:,} of {late['expected']:,} received, {late['duplicates']} duplicates, "
        f"{late['early']} before their deadline; alert rows in the database by status: {late['alerts_in_db']}; "
        f"largest gap between an alert's `due_at` and the deadline the benchmark set: "
        f"{_ms(None if late['due_at_max_deviation_s'] is None else late['due_at_max_deviation_s'] * 1000)} ms.",
        f"- Throughput: deadlines fell due at {late['demand_per_s']:.0f}/s; alerts were delivered at "
        f"{late['delivered_per_s']:.0f}/s on average from the first deadline to the last arrival.",
        "- Worker processes:",
        *worker_lines(late["workers"]),
    ]
    flushes = late["redis_flushes_by_others"]
    if flushes["while_arming"]:
        lines.append(
            f"- **Another Redis client ran FLUSHALL/FLUSHDB {flushes['while_arming']} times between the two "
            f"`used_memory` readings**: the `used_memory` figure is not meaningful; the key-by-key one is."
        )
    if flushes["while_firing"]:
        lines.append(
            f"- **Another Redis client ran FLUSHALL/FLUSHDB {flushes['while_firing']} times after the clocks "
            f"were armed**: their timers were wiped and rebuilt by sla-guard's reconciler, which these "
            f"lateness numbers include."
        )
    lines.append("")
    rows = []
    for name, key in (
        ("lateness (arrival − due_at)", "lateness_s"),
        ("of which: timer start (fired_at − due_at)", "fire_delay_s"),
        ("of which: delivery (arrival − fired_at)", "delivery_s"),
    ):
        value = late[key]
        rows.append([name, _s(value["min"]), _s(value["p50"]), _s(value["p95"]), _s(value["p99"]), _s(value["max"])])
    lines += _table(["seconds", "min", "median", "p95", "p99", "max"], rows)
    lines += ["", "Lateness by deadline, in sixths of the window (a growing backlog shows here):", ""]
    rows = [
        [
            f"{part['from_s']:.0f}–{part['to_s']:.0f} s",
            str(part["count"]),
            _s(part["p50"]),
            _s(part["p99"]),
            _s(part["max"]),
        ]
        for part in late["by_deadline"]
    ]
    lines += _table(["deadlines at", "alerts", "median s", "p99 s", "max s"], rows)
    lines.append("")
    return lines


def render(
    bench: Bench,
    facts: dict[str, str],
    options: str,
    ingest: dict | None,
    lateness: dict | None,
    elapsed_s: float,
    reconciler: dict | None = None,
) -> str:
    lines = [
        "# sla-guard benchmark results",
        "",
        f"Run on {bench.started_at:%Y-%m-%d %H:%M} UTC with `{options}`, {elapsed_s / 60:.1f} minutes, "
        "all processes and traffic on this machine (127.0.0.1).",
        "",
        "## Summary",
        "",
        *_table(["measure", "result", "target", "verdict"], summary_rows(ingest, lateness, reconciler)),
        "",
        "## Machine",
        "",
        *_table(["fact", "value"], [[key, value] for key, value in facts.items()]),
        "",
    ]
    if ingest:
        lines += ingest_section(ingest)
    if lateness:
        lines += lateness_section(lateness)
    if reconciler:
        from .reconciler import render_reconciler

        lines += render_reconciler(reconciler)
    lines += [
        "## Reading the numbers",
        "",
        "- Everything shares the machine's cores: the load generator, the server under test, PostgreSQL and "
        'Redis. The CPU tables show who used them; "other processes" is load the benchmark did not cause.',
        "- Lateness is made of the timer loop's wake-up (it sleeps until the earliest timer, at most "
        "`SLA_GUARD_TIMER_POLL_S` = 50 ms), firing in the loop's own thread (one transaction per batch of up "
        "to 50 due clocks) and delivery. More than a few hundred milliseconds is queueing: deadlines falling due faster than "
        "the workers fire them, or CPU taken by the backlog.",
        "- `used_memory` is the whole Redis server's and moves with other clients; the key-by-key account "
        "(`MEMORY USAGE` of this run's timer keys) does not.",
        "",
        "## How to reproduce",
        "",
        "With Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (user `postgres`, trust auth), from the "
        "repository root:",
        "",
        "```sh",
        "pip install -e '.[postgres]'",
        "python -m bench              # full run (under 10 minutes on 2 cores), writes bench/RESULTS.md",
        "python -m bench --quick      # short run: fewer clocks, 5 s of ingest",
        "python -m bench --help       # --clocks N, --window S, --duration S, --only ingest|lateness|reconciler, ...",
        "```",
        "",
        "The run creates and drops the database `sla_guard_bench`, uses RQ queues named `bench-<run id>-…` in "
        "Redis database 0 and removes their keys afterwards (never `FLUSHALL`). Logs and raw JSON results of the "
        "last three runs are kept in `bench/out/<run id>/` (ignored by git).",
        "",
    ]
    return "\n".join(lines)
