"""Building blocks of the store's statements, shared by its modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

T = TypeVar("T")


def dialect_insert(session: Session, model):
    """``INSERT`` for the session's database (PostgreSQL or SQLite), with ``on_conflict_*``."""
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(model)


def first_of_each(items: Iterable[T], key: Callable[[T], str]) -> tuple[list[T], list[str]]:
    """The first item of each key, in order, and the keys of the items repeated after it (a batch
    is stored once per key: the repeats are duplicates)."""
    firsts, seen, repeated = [], set(), []
    for item in items:
        if key(item) in seen:
            repeated.append(key(item))
        else:
            seen.add(key(item))
            firsts.append(item)
    return firsts, repeated
