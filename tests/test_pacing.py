"""The Redis-shared pacing of CRM calls, on the session's own Redis, with real waits."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from sla_guard.outbox.pacing import (
    Bucket,
    DailyBudget,
    PaceDeferred,
    Pacer,
    Window,
    account_key,
    pace_stats,
)


@pytest.fixture
def namespace(redis_conn):
    name = f"pace-test-{uuid.uuid4().hex[:8]}"
    yield name
    keys = list(redis_conn.scan_iter(f"{name}:*"))
    if keys:
        redis_conn.delete(*keys)


def run_calls(pacer: Pacer, workers: int, calls_each: int, limits, hold_s: float = 0.0, crm: str = "amocrm"):
    """Each worker thread (its own Redis connection) makes calls; returns (start, end) of each."""
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    account = account_key("https://acme.amocrm.ru")

    def worker():
        own = Pacer(pacer.redis.__class__.from_url(pacer.redis_url), pacer.namespace)
        for _ in range(calls_each):
            with own.turn(crm, account, limits):
                start = time.time()
                time.sleep(hold_s)
                end = time.time()
            with lock:
                spans.append((start, end))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(spans)


@pytest.fixture
def pacer(redis_conn, redis_url, namespace):
    made = Pacer(redis_conn, namespace)
    made.redis_url = redis_url
    return made


def test_three_workers_never_make_more_than_seven_calls_in_any_second(pacer):
    spans = run_calls(pacer, workers=3, calls_each=8, limits=[Window(7, 1.0)], hold_s=0.02)
    assert len(spans) == 24
    starts = [start for start, _ in spans]
    for start in starts:
        assert sum(1 for other in starts if start <= other < start + 1.0) <= 7
    # and it does not dawdle: 24 calls at 7 a second take a little over 3 seconds
    assert starts[-1] - starts[0] < 15


def test_a_call_holds_its_place_in_the_window_until_it_ends(pacer):
    spans = run_calls(pacer, workers=2, calls_each=2, limits=[Window(1, 0.2)], hold_s=0.3)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= end + 0.19


def test_a_bitrix24_bucket_lets_a_burst_of_50_through_then_two_a_second(pacer):
    account = account_key("portal.bitrix24.ru")
    limits = [Bucket(rate_per_s=2, burst=50)]
    waits, granted = [], []
    for _ in range(52):
        with pacer.turn("bitrix24", account, limits) as waited:
            waits.append(waited)
            granted.append(time.monotonic())
    assert waits[:50] == [0.0] * 50
    # then one every half second: the 52nd call goes a second after the first at the earliest
    assert granted[50] - granted[0] >= 0.45 and granted[51] - granted[0] >= 0.95


def test_a_daily_budget_spent_defers_calls_to_the_next_utc_day(pacer):
    account = account_key("pipedrive-token")
    limits = [DailyBudget(tokens=25)]
    for _ in range(2):
        with pacer.turn("pipedrive", account, limits, cost=10):
            pass
    with pytest.raises(PaceDeferred) as raised:
        with pacer.turn("pipedrive", account, limits, cost=10):
            pytest.fail("the call went out over the budget")
    seconds_to_midnight = 86400 - time.time() % 86400
    assert abs(raised.value.wait_s - seconds_to_midnight) < 5
    assert pace_stats(pacer.redis, pacer.namespace)["pipedrive"]["deferred"] == 1


def test_a_turn_further_away_than_a_job_may_wait_is_deferred_not_taken(pacer, redis_conn):
    account = account_key("https://acme.amocrm.ru")
    impatient = Pacer(redis_conn, pacer.namespace, max_wait_s=0.1)
    with impatient.turn("amocrm", account, [Window(1, 5.0)]):
        pass
    with pytest.raises(PaceDeferred) as raised:
        with impatient.turn("amocrm", account, [Window(1, 5.0)]):
            pytest.fail("the call went out")
    assert 2 < raised.value.wait_s <= 5.0
    stats = pace_stats(redis_conn, pacer.namespace)["amocrm"]
    assert stats["calls"] == 1 and stats["deferred"] == 1


def test_a_pause_holds_every_worker_of_the_account(pacer, redis_conn):
    account = account_key("https://acme.amocrm.ru")
    other = Pacer(redis_conn, pacer.namespace)
    pacer.limited("amocrm", account, 0.4)
    started = time.monotonic()
    with other.turn("amocrm", account, [Window(7, 1.0)]) as waited:
        pass
    assert time.monotonic() - started >= 0.35
    assert waited >= 0.35
    assert other.recently_limited("amocrm", account)
    assert not other.recently_limited("amocrm", account_key("https://other.amocrm.ru"))
    stats = pace_stats(redis_conn, pacer.namespace)["amocrm"]
    assert stats["rate_limited"] == 1 and stats["waits"] == 1 and stats["wait_seconds"] >= 0.35


def test_accounts_are_paced_apart_and_named_by_digest(pacer, redis_conn):
    token = "pipedrive-api-token-secret-0123"
    first, second = account_key(token), account_key("another-token-0123456")
    assert token not in first and first != second
    for account in (first, second):
        with pacer.turn("pipedrive", account, [Window(1, 10.0)]) as waited:
            assert waited == 0.0
    keys = b" ".join(redis_conn.scan_iter(f"{pacer.namespace}:*"))
    assert token.encode() not in keys


def test_metrics_show_the_pace_of_every_crm(client, redis_conn, queue_name, api_token):
    shared = Pacer(redis_conn, queue_name)
    account = account_key("https://acme.amocrm.ru")
    for _ in range(2):
        with shared.turn("amocrm", account, [Window(1, 0.2)]):
            pass
    shared.limited("bitrix24", account_key("portal.bitrix24.ru"), 0.01)
    body = client.get("/metrics", headers={"Authorization": f"Bearer {api_token}"}).get_data(as_text=True)
    assert 'sla_guard_crm_calls_total{crm="amocrm"} 2.0' in body
    assert 'sla_guard_crm_pace_waits_total{crm="amocrm"} 1.0' in body
    assert 'sla_guard_crm_rate_limited_total{crm="bitrix24"} 1.0' in body
