"""Persistence: SQLAlchemy models, the database handle, and the queries the app needs."""

from .db import Database, init_app

__all__ = ["Database", "init_app"]
