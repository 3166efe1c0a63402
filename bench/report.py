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


def summary_rows(ingest: dict | None, lateness: dict | None) -> list[list[str]]:
    rows = []
    if ingest:
        ratio, p99 = ingest["ratio"], ingest["sla_guard"]["latency_ms"]["p99"]
        errors = ingest["sla_guard"]["error_count"] + ingest["bare"]["error_count"]
        rows += [
            ["ingest throughput, sla-guard ÷ bare Flask", f"{ratio:.2f}×", "≥ 0.6×", _verdict(ratio >= 0.6)],
            ["ingest p99 time to 202 (sla-guard)", f"{_ms(p99)} ms", "< 50 ms", _verdict(p99 is not None and p99 < 50)],
            ["ingest errors (non-202, both targets)", str(errors), "0", _verdict(errors == 0)],
        ]
    if lateness:
        late, memory = lateness["lateness_s"], lateness["memory"]
        per_clock = memory["per_open_clock"]
        keyed_per_clock = memory["timer_keys_bytes"] / max(memory["open_clocks"], 1)
        rows += [
            [
                "alert lateness p50 / p99 / max",
                f"{_s(late['p50'])} / {_s(late['p99'])} / {_s(late['max'])} s",
                "–",
                "–",
            ],
            [
                "alerts received ÷ expected",
                f"{lateness['received']} ÷ {lateness['expected']}",
                "all",
                _verdict(lateness["received"] == lateness["expected"]),
            ],
            ["duplicate alerts", str(lateness["duplicates"]), "0", _verdict(lateness["duplicates"] == 0)],
            ["alerts before their deadline", str(lateness["early"]), "0", _verdict(lateness["early"] == 0)],
            [
                "Redis memory per open clock: `used_memory` delta · key by key",
                f"{_bytes(per_clock)} B · {_per(memory['timer_keys_bytes'], memory['open_clocks'])} B",
                "≤ 1 KB",
                _verdict(max(per_clock or 0, keyed_per_clock) <= 1024),
            ],
        ]
        exits = sum(len(state["exits"]) for state in lateness["workers"].values())
        rows.append(["`sla-guard worker` exits during the phase (restarted)", str(exits), "0", _verdict(exits == 0)])
    return rows


def ingest_section(ingest: dict) -> list[str]:
    s, bare, sla = ingest["settings"], ingest["bare"], ingest["sla_guard"]
    lines = [
        "## 1. Ingest: signed generic webhooks",
        "",
        f"gunicorn sync workers: {s['web_workers']} for both targets, with the options of `sla-guard serve` "
        f"(`sla_guard.web.server.gunicorn_options`). Load: one generator process (`bench/load.py`), "
        f"{s['concurrency']} concurrent connections, a new TCP connection per request (`Connection: close`), "
        f"{s['warmup_s']:g} s warm-up (sent, not counted), then {s['duration_s']:g} s measured. Each request is a "
        f"distinct signed event (own `event_id`, {s['leads']:,} leads, lifecycle event types), signed just before "
        f"it is sent; both targets get the same bodies in the same order. sla-guard runs on PostgreSQL with no "
        f"worker: the 202 comes after the commit and after the lead is handed to the workers through Redis.",
        "",
    ]
    rows = []
    for name, result in (("bare Flask (`bench/bare_app.py`)", bare), ("`sla-guard serve` on PostgreSQL", sla)):
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
        f"- Ratio sla-guard ÷ bare: **{ingest['ratio']:.2f}×**.",
        f"- sla-guard: {sla['warmup_accepted'] + sla['accepted']:,} requests answered 202 (warm-up included), "
        f"{sla['events_stored']:,} events stored; {_count(sla['queue_keys_removed'], 'Redis key')} of its queue "
        f"(the work waiting for a worker) removed afterwards.",
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
    s, memory = late["settings"], late["memory"]
    lines = [
        "## 2. Alert lateness with many open clocks",
        "",
        f"{s['clocks']:,} leads created through `POST /webhooks/generic` in signed arrays of {s['batch']} "
        f"({s['post_threads']} senders) to `sla-guard serve` ({s['web_workers']} gunicorn workers), processed by "
        f"{s['workers']} `sla-guard worker` processes (`SLA_GUARD_RECONCILE_INTERVAL_S={s['reconcile_interval_s']:g}`, "
        f"other settings default) on PostgreSQL. Rule: 24/7 (no calendar), `first_touch: {{within: {s['within_s']}s, "
        f"escalate: [{{after: 0s, notify: [sink]}}]}}`, `sink` a webhook channel pointing at a local threaded HTTP "
        f"receiver. `occurred_at` values put the deadlines uniformly over {s['window_s']:g} s starting "
        f"{s['lead_s']:.0f} s after the first post (the budget is at least 2 minutes and long enough that no "
        f"`occurred_at` lies in the future). Lateness = arrival at the receiver − `due_at`.",
        "",
        f"- Creations: posted in {late['posting_s']:.1f} s ({late['accepted']:,} accepted); all processed and their "
        f"timers scheduled {late['processing_s']:.1f} s after the first post "
        f"({late['accepted'] / late['processing_s']:.0f} creations/s); every clock armed before the first deadline: "
        f"{'yes' if late['armed_before_first_deadline'] else _not_armed(late['progress_at_first_deadline'])}.",
        f"- Redis `used_memory`: {memory['before']:,} B before the creations, {memory['after']:,} B once they were "
        f"processed: +{memory['delta']:,} B for {memory['open_clocks']:,} open clocks = "
        f"**{_bytes(memory['per_open_clock'])} B per open clock**; {memory['timers_scheduled']:,} timer jobs in the "
        f"scheduled registry. Key by key (`MEMORY USAGE`, which other clients of the same Redis do not disturb): "
        f"the {memory['timers_scheduled']:,} scheduled timer jobs ({_bytes(memory['job_key_bytes'])} B each, "
        f"median) plus the registry's {memory['registry_bytes']:,} B = {memory['timer_keys_bytes']:,} B, "
        f"{_per(memory['timer_keys_bytes'], memory['open_clocks'])} B per open clock.",
        f"- Alerts: {late['received']:,} of {late['expected']:,} received, {late['duplicates']} duplicates, "
        f"{late['early']} before their deadline; alert rows in the database by status: {late['alerts_in_db']}; "
        f"largest gap between an alert's `due_at` and the deadline the benchmark set: "
        f"{_ms(None if late['due_at_max_deviation_s'] is None else late['due_at_max_deviation_s'] * 1000)} ms.",
        f"- Throughput: deadlines fell due at {late['demand_per_s']:.0f}/s; alerts were delivered at "
        f"{late['delivered_per_s']:.0f}/s on average from the first deadline to the last arrival.",
        "- Worker processes:",
        *worker_lines(late["workers"]),
    ]
    if memory["delta"] < memory["timer_keys_bytes"]:
        lines.append(
            "- `used_memory` grew by less than this run's own timer keys take, so something else in the "
            "same Redis shrank in between (client buffers, other clients' keys, expiries): the key-by-key "
            "figure is the one to read."
        )
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
    bench: Bench, facts: dict[str, str], options: str, ingest: dict | None, lateness: dict | None, elapsed_s: float
) -> str:
    lines = [
        "# sla-guard benchmark results",
        "",
        f"Run on {bench.started_at:%Y-%m-%d %H:%M} UTC with `{options}`, {elapsed_s / 60:.1f} minutes, "
        "all processes and traffic on this machine (127.0.0.1).",
        "",
        "## Summary",
        "",
        *_table(["measure", "result", "target", "verdict"], summary_rows(ingest, lateness)),
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
    lines += [
        "## Reading the numbers",
        "",
        "- Everything shares the machine's cores: the load generator, the server under test, PostgreSQL and "
        'Redis. The CPU tables show who used them; "other processes" is load the benchmark did not cause.',
        "- An alert cannot arrive right at its deadline: a timer is scheduled at `next_fire_at` rounded *up* to the "
        "whole second, and RQ's scheduler looks for due timers once a second, so with no backlog lateness is "
        "about 0–2 s (median ≈ 1 s). More than that is queueing: deadlines falling due faster than the workers "
        "fire them.",
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
        "python -m bench              # full run (5–7 minutes on 2 cores), writes bench/RESULTS.md",
        "python -m bench --quick      # short run: 1,000 clocks, 5 s of ingest",
        "python -m bench --help       # --clocks N, --window S, --duration S, --only ingest|lateness, ...",
        "```",
        "",
        "The run creates and drops the database `sla_guard_bench`, uses RQ queues named `bench-<run id>-…` in "
        "Redis database 0 and removes their keys afterwards (never `FLUSHALL`). Logs and raw JSON results of the "
        "last three runs are kept in `bench/out/<run id>/` (ignored by git).",
        "",
    ]
    return "\n".join(lines)
