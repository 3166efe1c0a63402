"""Persistence: SQLAlchemy models, the database handle, and the queries the app needs."""

from sla_guard.store.db import Database, init_app

__all__ = ["Database", "init_app"]
