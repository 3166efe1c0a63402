"""The database handle: one engine and session factory per app or worker, never global."""

from __future__ import annotations

import time
from contextlib import contextmanager

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sla_guard.config import of_app

SQLITE_BUSY_S = 30.0
"""Longest a SQLite transaction waits for the write lock before it fails ("database is locked")."""

SQLITE_LOCK_POLL_S = 0.0005
"""How often a transaction waiting for SQLite's write lock tries again."""


def _sqlite_tuning(engine: Engine) -> None:
    """WAL, a busy timeout, and write transactions that take the lock up front.

    pysqlite's own BEGIN is deferred, so two workers could read the same lead and then both
    write; ``BEGIN IMMEDIATE`` serialises them, which is what the per-lead replay needs.

    Waiting for the lock is done here, polling every half millisecond: SQLite's own busy
    handler sleeps ever longer (up to 100 ms at a time) while the lock is taken, so a webhook
    behind a 10 ms transaction could wait ten times as long. Its timeout stays as the backstop
    of any other statement.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("PRAGMA busy_timeout=0")
        try:
            deadline = time.monotonic() + SQLITE_BUSY_S
            while True:
                try:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                        raise
                    time.sleep(SQLITE_LOCK_POLL_S)
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")


class Database:
    """Engine plus session factory for one database URL."""

    def __init__(self, url: str, echo: bool = False):
        self.url = url
        kwargs: dict = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_recycle=1800, pool_size=5, max_overflow=10)
        self.engine = create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            _sqlite_tuning(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self):
        """A session in a transaction: committed on success, rolled back on error."""
        session: Session = self.sessions()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def check_writable(self) -> None:
        """Raise unless the database takes a write now (a read-only file, a full disk, a
        read-only replica all fail here): a probe row written and rolled back, never kept."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(
                    text("INSERT INTO rule_versions (version, loaded_at, text) VALUES (:v, CURRENT_TIMESTAMP, '')"),
                    {"v": "readiness-probe"},
                )
            finally:
                transaction.rollback()

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app) -> Database:
    """Attach a :class:`Database` for the app's ``DATABASE_URL`` to the Flask app."""
    database = Database(of_app(app).database_url)
    app.extensions["sla_guard.db"] = database
    return database


def get_db(app) -> Database:
    return app.extensions["sla_guard.db"]
