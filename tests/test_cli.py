"""The `sla-guard` command as ops use it."""

import json
import subprocess
import sys
from pathlib import Path

from sla_guard.cli import main

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "sla.yaml"


def test_rules_check_accepts_the_shipped_file(runner):
    result = runner.invoke(main, ["rules", "check", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert "OK, 3 rules, version" in result.output


def test_rules_check_lists_errors_with_their_path(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n    first_touch: {within: 15 minutes}\n  - name: b\n    calendar: office\n")
    result = runner.invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 2
    assert 'rules[0].first_touch.within: "15 minutes" is not a duration; use 15m' in result.output
    assert 'rules[1].calendar: "office" is not in calendars' in result.output


def test_rules_check_warns_about_shadowed_rules(runner, tmp_path):
    path = tmp_path / "sla.yaml"
    path.write_text(
        "rules:\n  - {name: all, first_touch: {within: 1h}}\n"
        "  - {name: web, match: {source: website}, first_touch: {within: 5m}}\n"
    )
    result = runner.invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 0
    assert 'warning: rules[1]: "web" never applies' in result.output


def test_rules_explain_shows_the_rule_and_deadlines(runner, tmp_path, rules_path):
    lead = tmp_path / "lead.json"
    lead.write_text(
        json.dumps(
            {
                "event_id": "e1",
                "type": "lead.created",
                "occurred_at": "2026-11-23T09:00:00Z",
                "lead": {"id": "L-1", "source": "website", "priority": "hot", "owner": "anna"},
            }
        )
    )
    result = runner.invoke(main, ["rules", "explain", str(rules_path), str(lead)])
    assert result.exit_code == 0, result.output
    assert 'rules[0] "hot website leads": MATCHES' in result.output
    assert "✓ lead source='website'" in result.output
    assert "deadline 2026-11-23 09:15:00 UTC (2026-11-23 09:15:00Z)" in result.output
    assert "warning: 2026-11-23 09:12:00 UTC" in result.output
    assert "escalation level 2: 2026-11-23 10:15:00 UTC (2026-11-23 10:15:00Z) → head, reassign" in result.output


def test_rules_explain_refuses_a_bad_event(runner, tmp_path, rules_path):
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"event_id": "e1", "type": "lead.created", "lead": {"id": "L-1"}}))
    result = runner.invoke(main, ["rules", "explain", str(rules_path), str(lead)])
    assert result.exit_code == 2
    assert "occurred_at" in result.output


def run_cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "sla_guard.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "mysql://x/y", "SLA_GUARD_RULES": str(SHIPPED)}
    result = run_cli("worker", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "sla-guard: DATABASE_URL must point to SQLite or PostgreSQL"


def test_an_invalid_rules_file_stops_serve_and_worker(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n    first_touch: {within: soon}\n")
    env = {"PATH": "/usr/bin:/bin", "SLA_GUARD_RULES": str(bad), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    for command in ("serve", "worker"):
        result = run_cli(command, env=env)
        assert result.returncode == 2
        assert "rules[0].first_touch.within" in result.stderr


def test_worker_says_how_to_get_redis(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "SLA_GUARD_RULES": str(SHIPPED),
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
    }
    result = run_cli("worker", env=env)
    assert result.returncode == 2
    assert "Redis is not reachable at redis://127.0.0.1:9/0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_database_without_the_schema(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SLA_GUARD_RULES": str(SHIPPED), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    assert "run `sla-guard db upgrade`" in result.stderr
    assert run_cli("db", "upgrade", env=env).returncode == 0
