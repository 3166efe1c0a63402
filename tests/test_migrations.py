"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from sla_guard.store.migrate import current, head, upgrade
from sla_guard.store.models import Base


def test_migrations_match_the_models(db_url):
    engine = create_engine(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
    assert current(db_url) == head()


def test_upgrade_is_repeatable(db_url):
    upgrade(db_url)
    assert current(db_url) == head()
