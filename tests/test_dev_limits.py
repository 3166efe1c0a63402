"""`sla-guard dev` says what it is for: one writer on SQLite, and PostgreSQL for production."""

from __future__ import annotations

from sla_guard.devserver import limits


def test_dev_on_sqlite_states_the_one_writer_limit_and_the_way_out():
    text = limits("sqlite:///sla_guard.db")
    assert "SQLite runs in WAL mode with one writer at a time" in text
    assert "DATABASE_URL=postgresql://" in text and "sla-guard worker" in text


def test_dev_on_postgresql_does_not_talk_about_sqlite():
    text = limits("postgresql+psycopg://postgres@127.0.0.1/sla")
    assert "SQLite" not in text and "trying sla-guard out" in text
