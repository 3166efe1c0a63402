"""Group commit: the webhook requests of one web process share their inbox transactions.

Each request thread hands its events to the process's :class:`GroupCommit` and waits. One
writer thread takes everything handed over since its last commit, stores it with one
multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in one transaction, commits, and wakes
every waiting request with its own accepted and duplicate event ids. While the writer commits,
new requests gather for the next batch, so under load one commit (one fsync) serves many
requests, and with a single request in flight nothing waits longer than its own commit. Once a
batch is committed, the writer rings the workers' doorbell for all its new leads in one Redis
round trip (``doorbell``), before it wakes the requests.

A 202 still means committed: a request is woken only after the commit of the transaction that
holds its events. When a batch fails, its requests are stored one by one, so one request's bad
data never fails another's; the requests whose own transaction fails get the error (a 503).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sla_guard.core.events import LeadEvent
from sla_guard.store.db import Database
from sla_guard.store.repository import event_rows, store_event_rows

log = logging.getLogger("sla_guard.ingest.group_commit")

MOST_ROWS = 1000
"""Most inbox rows one transaction stores; more wait for the next one."""

WAIT_S = 30.0
"""Longest a request waits for its commit before it answers 503."""


class CommitTimeout(Exception):
    """The writer did not commit the request's events in time."""


@dataclass
class Handover:
    """One request's events, handed to the writer; ``done`` is set once they are committed."""

    source: str
    events: list[LeadEvent]
    received_at: datetime
    rows: list[dict] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    accepted_leads: list[str] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def of(cls, source: str, events: list[LeadEvent], received_at: datetime) -> Handover:
        handover = cls(source, events, received_at)
        handover.rows, handover.duplicates = event_rows(source, events, received_at)
        return handover


class GroupCommit:
    """One writer per process for the inbox (see the module's description)."""

    def __init__(self, database: Database, doorbell: Callable[[list[str]], None] | None = None):
        self.database = database
        self.doorbell = doorbell
        """Called once per committed batch with the leads that have new events (never raises)."""
        self._ready = threading.Condition()
        self._pending: list[Handover] = []
        self._writer: threading.Thread | None = None
        self._pid: int | None = None

    def store(self, source: str, events: list[LeadEvent], received_at: datetime) -> tuple[list[str], list[str]]:
        """Store ``events`` (committed on return): ``(accepted, duplicates)`` event ids.

        Raises the database's error, or :class:`CommitTimeout`, when they could not be stored.
        """
        ticket = Handover.of(source, events, received_at)
        if not ticket.rows:
            return [], ticket.duplicates
        with self._ready:
            self._start_writer()
            self._pending.append(ticket)
            self._ready.notify()
        if not ticket.done.wait(WAIT_S):
            raise CommitTimeout("the events were not committed in time")
        if ticket.error is not None:
            raise ticket.error
        return ticket.accepted, ticket.duplicates

    def _start_writer(self) -> None:
        if self._writer is None or self._pid != os.getpid() or not self._writer.is_alive():
            self._pid = os.getpid()  # a forked web worker starts its own writer
            self._writer = threading.Thread(target=self._run, name="sla-guard-inbox-writer", daemon=True)
            self._writer.start()

    def _take(self) -> list[Handover]:
        with self._ready:
            while not self._pending:
                self._ready.wait()
            batch, rows = [], 0
            while self._pending and (not batch or rows + len(self._pending[0].rows) <= MOST_ROWS):
                ticket = self._pending.pop(0)
                batch.append(ticket)
                rows += len(ticket.rows)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                self.commit(batch)
            except BaseException as exc:  # the writer must outlive anything; nobody is left waiting
                for ticket in batch:
                    if not ticket.done.is_set():
                        ticket.error = exc
                        ticket.done.set()

    def commit(self, batch: list[Handover]) -> None:
        """Store the handovers' events in one transaction and wake their requests; when that
        fails, store each handover in a transaction of its own."""
        try:
            self._store(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            log.warning("inbox batch not stored; storing its requests one by one", exc_info=True)
            for ticket in batch:
                self.commit([ticket])
            return
        if self.doorbell is not None:
            leads = [ticket.accepted_leads for ticket in batch]
            self.doorbell(list(dict.fromkeys(lead_id for lead_ids in leads for lead_id in lead_ids)))
        for ticket in batch:
            ticket.done.set()

    def _store(self, batch: list[Handover]) -> None:
        rows, owner = [], {}
        for ticket in batch:  # the same event in two requests of one batch: the first one stores it
            for row in ticket.rows:
                key = (row["source"], row["event_id"])
                if key not in owner:
                    owner[key] = ticket
                    rows.append(row)
        with self.database.engine.begin() as connection:
            stored = store_event_rows(connection, rows)
        for ticket in batch:
            ticket.accepted, ticket.accepted_leads, extra = [], [], []
            for row in ticket.rows:
                key = (row["source"], row["event_id"])
                if key in stored and owner.get(key) is ticket:
                    ticket.accepted.append(row["event_id"])
                    ticket.accepted_leads.append(row["lead_id"])
                else:
                    extra.append(row["event_id"])
            ticket.duplicates = ticket.duplicates + extra
