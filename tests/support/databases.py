"""Plain helpers for the test databases."""

from __future__ import annotations

from sqlalchemy import create_engine

from sla_guard.store.models import Base


def empty_tables(url: str) -> None:
    """Delete every row of every table of the database at ``url``, children first."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()
