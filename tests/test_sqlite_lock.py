"""SQLite, the default database: write transactions take the one write lock up front and wait
their turn for it (polling, not SQLite's ever longer sleeps), and fail only after the busy
timeout."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from sla_guard.store import db as db_module
from sla_guard.store.db import Database
from sla_guard.store.models import Base


@pytest.fixture
def sqlite_db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'lock.db'}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


def hold_write_lock(database: Database, taken: threading.Event, release: threading.Event) -> threading.Thread:
    def hold():
        with database.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO rule_versions (version, loaded_at, text) VALUES ('held', '2026-01-01', '')")
            )
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    return thread


def test_a_transaction_waits_for_the_write_lock_and_then_commits(sqlite_db):
    taken, release = threading.Event(), threading.Event()
    holder = hold_write_lock(sqlite_db, taken, release)
    committed = threading.Event()

    def write():
        with sqlite_db.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO rule_versions (version, loaded_at, text) VALUES ('next', '2026-01-02', '')")
            )
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000  # the backstop is back
        committed.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not committed.wait(0.3)  # still waiting for the lock, not failed
    release.set()
    holder.join(10)
    writer.join(10)
    assert committed.is_set()
    with sqlite_db.engine.connect() as connection:
        versions = connection.execute(text("SELECT version FROM rule_versions ORDER BY version")).scalars()
        assert list(versions) == ["held", "next"]


def test_a_transaction_gives_up_after_the_busy_timeout(sqlite_db, monkeypatch):
    monkeypatch.setattr(db_module, "SQLITE_BUSY_S", 0.2)
    taken, release = threading.Event(), threading.Event()
    holder = hold_write_lock(sqlite_db, taken, release)
    try:
        with pytest.raises(OperationalError, match="locked"):
            with sqlite_db.engine.begin() as connection:
                connection.execute(text("SELECT 1"))
    finally:
        release.set()
        holder.join(10)
