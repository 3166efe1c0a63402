import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from sla_guard.core.rules.lint import lint
from sla_guard.core.rules.loading import parse_rules
from sla_guard.core.rules.matching import match_rule, rule_matches
from sla_guard.exceptions import RulesError

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "sla.yaml"


def errors_of(text, env=None):
    with pytest.raises(RulesError) as info:
        parse_rules(textwrap.dedent(text), env=env or {})
    return dict(info.value.errors)


def test_the_shipped_example_is_valid():
    rules = parse_rules(SHIPPED.read_text(), env={})
    assert [rule.name for rule in rules.rules] == ["hot website leads", "large deals", "everything else"]
    hot = rules.rules[0]
    assert hot.first_touch.within == timedelta(minutes=15)
    assert hot.first_touch.warn_at.offset(hot.first_touch.within) == timedelta(minutes=12)
    assert hot.first_touch.escalate[1].reassign is True
    assert rules.channels["managers-hook"].url == "http://127.0.0.1:9000/sla-alerts"


def test_env_references_fill_secrets():
    rules = parse_rules(SHIPPED.read_text(), env={"SLA_GUARD_MANAGERS_HOOK_URL": "https://bot.example/hook"})
    assert rules.channels["managers-hook"].url == "https://bot.example/hook"


def test_version_is_the_content_hash():
    a = parse_rules(SHIPPED.read_text(), env={})
    b = parse_rules(SHIPPED.read_text() + "\n# comment\n", env={})
    assert a.version != b.version and len(a.version) == 12
    assert parse_rules(SHIPPED.read_text(), env={}).version == a.version


def test_errors_point_into_the_file():
    errors = errors_of("""
        rules:
          - name: a
            first_touch: {within: 15m}
          - name: b
            first_touch: {within: 2h}
          - name: c
            first_touch: {within: "15 minutes", escalate: [{after: 0m, notify: [owner]}]}
    """)
    assert errors == {"rules[2].first_touch.within": '"15 minutes" is not a duration; use 15m'}


def test_every_problem_is_reported_at_once():
    errors = errors_of("""
        timezone: Mars/Olympus
        rules:
          - name: a
            colour: red
            first_touch: {within: 0m}
    """)
    assert errors["timezone"].startswith('"Mars/Olympus" is not an IANA time zone')
    assert errors["rules[0].colour"] == "unknown key"
    assert errors["rules[0].first_touch.within"] == "must be longer than 0s"


def test_cross_references_are_checked():
    errors = errors_of("""
        channels:
          hook: {type: webhook}
          tg: {type: pigeon}
        people:
          anna: {manager: nobody, channels: [hook, fax]}
        rules:
          - name: a
            calendar: office
            match: {colour: red}
            first_touch: {within: 15m, escalate: [{notify: [owner, boss]}]}
          - name: a
            first_touch: {within: 15m}
    """)
    assert errors == {
        "channels.hook.url": "a webhook channel needs a url",
        "channels.tg.type": '"pigeon" is not a supported channel type (webhook, log, telegram, slack, email, teams, crm)',
        "people.anna.manager": '"nobody" is not in people',
        "people.anna.channels[1]": '"fax" is not a channel',
        "rules[0].match.colour": "cannot match on 'colour'; use one of source, pipeline, stage, priority, team, owner, tags, amount, name",
        "rules[0].calendar": '"office" is not in calendars',
        "rules[0].first_touch.escalate[0].notify[1]": '"boss" is neither a role (owner, manager, head) nor a channel',
        "rules[1].name": '"a" is used by an earlier rule',
    }


def test_missing_env_reference_is_named():
    errors = errors_of("""
        channels: {hook: {type: webhook, url: "${HOOK_URL}"}}
        rules: [{name: a, first_touch: {within: 1h}}]
    """)
    assert errors == {"channels.hook.url": "environment variable HOOK_URL is not set"}


def test_ladder_must_climb():
    errors = errors_of("""
        rules:
          - name: a
            first_touch: {within: 1h, escalate: [{after: 2h, notify: [owner]}, {after: 1h, notify: [manager]}]}
    """)
    assert errors == {"rules[0].first_touch.escalate": "levels must be in increasing order of `after`"}


@pytest.mark.parametrize(
    "warn, message",
    [
        ("120%", "between 0% and 100%"),
        ("soon", "neither a percentage"),
    ],
)
def test_warn_at_forms(warn, message):
    errors = errors_of(f"""
        rules: [{{name: a, first_touch: {{within: 1h, warn_at: "{warn}"}}}}]
    """)
    assert message in errors["rules[0].first_touch.warn_at"]


def test_warn_at_as_time_before_deadline():
    rules = parse_rules("rules: [{name: a, first_touch: {within: 1h, warn_at: 10m}}]", env={})
    assert rules.rules[0].first_touch.warn_at.offset(timedelta(hours=1)) == timedelta(minutes=50)


def test_invalid_yaml_gives_line_and_column():
    errors = errors_of("rules: [\n  - name: a\n   bad")
    assert any(path.startswith("line ") for path in errors)


def test_no_rules_is_an_error():
    assert "rules" in errors_of("timezone: UTC\n")


MATCHING = parse_rules(
    textwrap.dedent("""
    rules:
      - name: hot web
        match: {source: [website, landing], priority: hot}
        first_touch: {within: 15m}
      - name: enterprise tag
        match: {tags: enterprise}
        first_touch: {within: 30m}
      - name: big
        match: {amount: {min: 1000000}}
        first_touch: {within: 1h}
      - name: mid
        match: {amount: {min: 100000, max: 999999.99}, pipeline: b2b}
        first_touch: {within: 90m}
      - name: default
        first_touch: {within: 2h}
"""),
    env={},
)


@pytest.mark.parametrize(
    "lead, rule",
    [
        ({"source": "website", "priority": "hot"}, "hot web"),
        ({"source": "Landing", "priority": "HOT"}, "hot web"),
        ({"source": "website", "priority": "cold"}, "default"),
        ({"source": "website"}, "default"),
        ({"tags": ["vip", "enterprise"]}, "enterprise tag"),
        ({"tags": ["vip"]}, "default"),
        ({"amount": 1_000_000}, "big"),
        ({"amount": 999_999, "pipeline": "b2b"}, "mid"),
        ({"amount": 999_999, "pipeline": "b2c"}, "default"),
        ({"amount": 50, "pipeline": "b2b"}, "default"),
        ({"source": "website", "priority": "hot", "amount": 5_000_000}, "hot web"),
        ({}, "default"),
    ],
)
def test_first_matching_rule_wins(lead, rule):
    assert match_rule(MATCHING, lead).name == rule


def test_numbers_in_yaml_match_text_from_crms():
    rules = parse_rules("rules: [{name: a, match: {pipeline: 8572511}, first_touch: {within: 1h}}]", env={})
    assert rule_matches(rules.rules[0], {"pipeline": "8572511"})


def test_lint_finds_shadowed_and_impossible_rules():
    rules = parse_rules(
        textwrap.dedent("""
        rules:
          - name: web
            match: {source: [website, landing]}
            first_touch: {within: 15m}
          - name: web hot
            match: {source: website, priority: hot}
            first_touch: {within: 5m}
          - name: nothing
            match: {amount: {min: 10, max: 5}}
            first_touch: {within: 5m}
          - name: catch all
            first_touch: {within: 2h}
          - name: after all
            match: {source: phone}
            first_touch: {within: 1h}
    """),
        env={},
    )
    warnings = dict(lint(rules))
    assert "shadowed" not in warnings
    assert warnings["rules[1]"].startswith('"web hot" never applies: rules[0] "web"')
    assert warnings["rules[2]"] == '"nothing" can never match: match.amount has min greater than max'
    assert warnings["rules[4]"].startswith('"after all" never applies: rules[3] "catch all"')
    assert "rules[0]" not in warnings and "rules[3]" not in warnings


def test_lint_is_quiet_on_the_shipped_example():
    assert lint(parse_rules(SHIPPED.read_text(), env={})) == []
