"""End to end: the real `sla-guard serve` and `sla-guard worker` take up an edited rules file
without a restart, on their own when the file changes, and at once on SIGHUP; open clocks are
recomputed under the new version."""

from __future__ import annotations

import os
import signal
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.processes import Stack, lead_created, wait_for

pytestmark = pytest.mark.e2e

RULES = textwrap.dedent("""
    timezone: UTC
    channels:
      sink: {type: webhook, url: "${SINK_URL}"}
    people:
      anna: {channels: [sink]}
    rules:
      - name: every lead
        first_touch:
          within: 1h
          escalate: [{after: 0s, notify: [owner]}]
""")
LONGER = RULES.replace("within: 1h", "within: 3h")


@pytest.fixture
def stack(start_stack, sink):
    return start_stack(RULES)


def create_lead(stack: Stack, lead_id: str) -> datetime:
    at = datetime.now(UTC).replace(microsecond=0)
    assert stack.post(lead_created(lead_id, at)).status_code == 202
    return at


def deadline_of(stack: Stack, lead_id: str) -> datetime | None:
    lead = stack.lead(lead_id)
    if lead is None:
        return None
    clocks = [c for c in lead["clocks"] if c["name"] == "first_touch" and c["stopped_at"] is None]
    return datetime.fromisoformat(clocks[0]["due_at"].replace("Z", "+00:00")) if clocks else None


def test_an_edited_rules_file_takes_effect_without_a_restart(stack):
    created = create_lead(stack, "L-open")
    assert wait_for(lambda: deadline_of(stack, "L-open")) == created + timedelta(hours=1)
    old = stack.api("/api/rules").json()["version"]

    stack.rules_path.write_text(LONGER)

    assert wait_for(lambda: stack.api("/api/rules").json()["version"] != old), "the web kept the old rules"
    assert wait_for(lambda: deadline_of(stack, "L-open") == created + timedelta(hours=3)), (
        f"the open clock was not recomputed:\n{stack.logs('worker')}"
    )
    later = create_lead(stack, "L-new")
    assert wait_for(lambda: deadline_of(stack, "L-new")) == later + timedelta(hours=3)


def test_sighup_makes_the_worker_read_the_rules_file_at_once(stack):
    created = create_lead(stack, "L-open")
    assert wait_for(lambda: deadline_of(stack, "L-open")) == created + timedelta(hours=1)
    # Rewrite the file but keep its modification time: only the signal can make it count.
    before = os.stat(stack.rules_path)
    stack.rules_path.write_text(LONGER)
    os.utime(stack.rules_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    unsignalled = create_lead(stack, "L-before-signal")
    assert wait_for(lambda: deadline_of(stack, "L-before-signal")) == unsignalled + timedelta(hours=1)

    os.kill(stack.worker.pid, signal.SIGHUP)

    # the open clock is recomputed under the reloaded rules (the file's time never changed)...
    assert wait_for(lambda: deadline_of(stack, "L-open") == created + timedelta(hours=3)), (
        f"the open clock was not recomputed under the reloaded rules:\n{stack.logs('worker')}"
    )
    # ...and a lead that comes afterwards gets the new deadline
    signalled = create_lead(stack, "L-after-signal")
    assert wait_for(lambda: deadline_of(stack, "L-after-signal")) == signalled + timedelta(hours=3), stack.logs(
        "worker"
    )
    assert stack.worker.poll() is None, "the worker stopped on SIGHUP"
