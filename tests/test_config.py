"""Settings: the environment's names and defaults of the contract, typed, checked once."""

from __future__ import annotations

import dataclasses

import pytest

from sla_guard.config import DEFAULTS, Settings, crm_settings, load_settings
from sla_guard.exceptions import ConfigError

CONTRACT_DEFAULTS = {
    "DATABASE_URL": "sqlite:///sla_guard.db",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SLA_GUARD_RULES": "config/sla.yaml",
    "SLA_GUARD_WEBHOOK_SECRET": None,
    "SLA_GUARD_API_TOKEN": None,
}


def test_defaults_are_the_contracts():
    settings = load_settings(env={})
    assert (settings.database_url, settings.redis_url, settings.rules_path) == (
        "sqlite:///sla_guard.db",
        "redis://127.0.0.1:6379/0",
        "config/sla.yaml",
    )
    assert settings.webhook_secret is None and settings.api_token is None
    assert {key: DEFAULTS[key] for key in CONTRACT_DEFAULTS} == CONTRACT_DEFAULTS


def test_the_environment_sets_typed_values():
    settings = load_settings(
        env={
            "DATABASE_URL": "postgresql://sales@db/sla",
            "SLA_GUARD_ARM_HORIZON_S": "600",
            "SLA_GUARD_SCHEDULER_INTERVAL_S": "0.5",
            "SLA_GUARD_LOG_LEVEL": "debug",
            "SLA_GUARD_API_TOKEN": "an-api-token-of-enough-length",
            "HOME": "/root",
        }
    )
    assert settings.arm_horizon_s == 600 and settings.scheduler_interval_s == 0.5
    assert settings.log_level == "DEBUG"
    assert settings.database_url == "postgresql+psycopg://sales@db/sla"
    assert settings.api_token == "an-api-token-of-enough-length"


def test_overrides_win_over_the_environment():
    settings = load_settings(env={"SLA_GUARD_QUEUE": "from-env"}, overrides={"SLA_GUARD_QUEUE": "from-test"})
    assert settings.queue == "from-test"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("SLA_GUARD_WEB_WORKERS", "four", "SLA_GUARD_WEB_WORKERS='four' is not a whole number"),
        ("SLA_GUARD_ARM_HORIZON_S", "0", "SLA_GUARD_ARM_HORIZON_S must be greater than 0"),
        ("SLA_GUARD_RECONCILE_INTERVAL_S", "60", "SLA_GUARD_RECONCILE_INTERVAL_S must be between 0 and 30 seconds"),
        ("DATABASE_URL", "mysql://db/sla", "DATABASE_URL must point to SQLite or PostgreSQL"),
        ("DATABASE_URL", "not a url", "DATABASE_URL is not a database URL"),
        ("REDIS_URL", "http://cache", "REDIS_URL must start with redis://"),
        ("SLA_GUARD_QUEUE", "sla guard", "SLA_GUARD_QUEUE may hold only"),
        ("SLA_GUARD_LOG_LEVEL", "LOUD", "SLA_GUARD_LOG_LEVEL must be one of"),
        ("SLA_GUARD_WEBHOOK_SECRET", "short", "SLA_GUARD_WEBHOOK_SECRET is too short"),
    ],
)
def test_a_bad_value_stops_with_one_line_naming_the_setting(key, value, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(env={key: value})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_settings_cannot_change_and_a_changed_copy_is_checked_again():
    settings = load_settings(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.alert_max_attempts = 3  # type: ignore[misc]
    assert settings.replace(alert_max_attempts=3).alert_max_attempts == 3
    assert settings.alert_max_attempts == 8
    with pytest.raises(ConfigError, match="SLA_GUARD_ALERT_MAX_ATTEMPTS must be greater than 0"):
        settings.replace(alert_max_attempts=0)


def test_each_crm_reads_its_own_settings_and_unset_ones_are_absent():
    settings = load_settings(
        env={
            "SLA_GUARD_AMOCRM_TOKEN": "amo-token",
            "SLA_GUARD_AMOCRM_ACCOUNT_ID": "",
            "SLA_GUARD_BITRIX24_APP_TOKEN": "b24-token",
            "AMOCRM_TOKEN": "not ours",
        }
    )
    assert settings.crm("amocrm") == {"SLA_GUARD_AMOCRM_TOKEN": "amo-token"}
    assert settings.crm("bitrix24") == {"SLA_GUARD_BITRIX24_APP_TOKEN": "b24-token"}
    assert settings.crm("hubspot") == {}
    assert crm_settings({"SLA_GUARD_HUBSPOT_ACCESS_TOKEN": "t", "SLA_GUARD_AMOCRM_TOKEN": "a"}, "hubspot") == {
        "SLA_GUARD_HUBSPOT_ACCESS_TOKEN": "t"
    }


def test_secrets_stay_out_of_the_settings_repr():
    settings = Settings(
        database_url="postgresql+psycopg://sales:db-password@db/sla",
        api_token="api-token-0123456789",
        crm_values={"SLA_GUARD_AMOCRM_ACCESS_TOKEN": "amo-access-token"},
    )
    shown = repr(settings)
    assert "db-password" not in shown and "api-token-0123456789" not in shown and "amo-access-token" not in shown
    assert "postgresql+psycopg://sales:***@db/sla" in shown


def test_the_app_carries_the_settings_under_one_key(app):
    from sla_guard.config import APP_CONFIG_KEY, of_app

    settings = of_app(app)
    assert isinstance(settings, Settings) and app.config[APP_CONFIG_KEY] is settings
    assert not any(key.startswith("SLA_GUARD_") and key != APP_CONFIG_KEY for key in app.config)
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_body_bytes
