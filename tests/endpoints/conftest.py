"""The CRM endpoints with every CRM enabled: Bitrix24's portal and amoCRM's API are stood in
by the local HTTP server, which also plays the alert sink. Plain helpers for these tests are in
:mod:`tests.support.crm_requests` and :mod:`tests.support.crm_payloads`."""

from __future__ import annotations

import pytest

from tests.support.crm_requests import (
    AMO_ACCESS_TOKEN,
    AMO_ACCOUNT,
    AMO_TOKEN,
    B24_APP_TOKEN,
    B24_KEY,
    HUBSPOT_SECRET,
    HUBSPOT_URL,
    OWNERS,
    PIPEDRIVE_PASSWORD,
    PIPEDRIVE_USER,
)


@pytest.fixture
def rules_text(rules_text):
    people = "".join(f"  '{owner}': {{channels: [sink]}}\n" for owner in OWNERS)
    return rules_text.replace("people:\n", "people:\n" + people, 1)


@pytest.fixture
def amo_rest():
    """Whether amoCRM's REST credentials are set (a test parametrizes it to True)."""
    return False


@pytest.fixture
def crm_config(httpserver, monkeypatch, amo_rest):
    """Every CRM enabled; Bitrix24's portal (and amoCRM's API) is the local HTTP server."""
    monkeypatch.setenv("SINK_URL", httpserver.url_for("/alerts"))
    config = {
        "SLA_GUARD_AMOCRM_TOKEN": AMO_TOKEN,
        "SLA_GUARD_AMOCRM_ACCOUNT_ID": AMO_ACCOUNT,
        "SLA_GUARD_BITRIX24_APP_TOKEN": B24_APP_TOKEN,
        "SLA_GUARD_BITRIX24_REST_URL": httpserver.url_for(f"/rest/1/{B24_KEY}/"),
        "SLA_GUARD_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
        "SLA_GUARD_HUBSPOT_PUBLIC_URL": HUBSPOT_URL,
        "SLA_GUARD_PIPEDRIVE_USER": PIPEDRIVE_USER,
        "SLA_GUARD_PIPEDRIVE_PASSWORD": PIPEDRIVE_PASSWORD,
    }
    if amo_rest:
        config.update(
            {"SLA_GUARD_AMOCRM_BASE_URL": httpserver.url_for("/amo"), "SLA_GUARD_AMOCRM_ACCESS_TOKEN": AMO_ACCESS_TOKEN}
        )
    return config


@pytest.fixture
def settings(settings, crm_config):
    """The shared test settings plus the CRMs' (the app and the worker runtime both use them)."""
    return {**settings, **crm_config}
