"""The request budget's guarantees, with real processes and a real Redis: the limit, leases, one pause."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from typing import cast

import pytest
import redis
from django.conf import settings as django_settings

from core.budget import Budget, BudgetUnavailable, LocalBudget, RedisBudget
from tests.support.waiting import wait_until

REDIS_URL = django_settings.TEST_REDIS_URL
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def key() -> Iterator[str]:
    """Budget keys of this test's own, removed afterwards."""
    prefix = f"test-budget-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(f"*{prefix}*"):
        client.delete(name)


def budget(key: str, limit: int = 3, lease: float = 30.0, per_minute: int | None = None) -> RedisBudget:
    return RedisBudget(REDIS_URL, key, limit, lease, per_minute)


def hammer(key: str, limit: int, counter: str, rounds: int, most: str) -> None:
    """In a process of its own: take slots ``rounds`` times, counting how many are held at once."""
    shared = budget(key, limit)
    client = redis.Redis.from_url(REDIS_URL)
    for _ in range(rounds):
        with shared.slot():
            now = cast(int, client.incr(counter))
            client.eval(
                "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
                "redis.call('SET', KEYS[1], ARGV[1]) end",
                1,
                most,
                str(now),
            )
            time.sleep(0.005)
            client.decr(counter)


def test_processes_sharing_a_budget_never_hold_more_slots_than_its_limit_and_do_use_them_all(
    key: str,
) -> None:
    counter, most = f"{key}:held", f"{key}:most"
    processes = [FORK.Process(target=hammer, args=(key, 3, counter, 40, most)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    client = redis.Redis.from_url(REDIS_URL)
    assert int(cast(bytes, client.get(most)) or 0) == 3  # never 4; and 3 was reached, so the test could fail
    assert budget(key).in_flight() == 0
    assert budget(key).started() == 6 * 40


def hold_and_wait(key: str, slots: int, lease: float, held: Event) -> None:
    """Take ``slots`` slots and never give them back: the process is killed holding them."""
    shared = budget(key, 3, lease)
    for _ in range(slots):
        shared.acquire()
    held.set()
    time.sleep(600)


def test_slots_of_a_killed_process_come_back_by_themselves_when_their_lease_ends(key: str) -> None:
    lease = 2.0
    held = FORK.Event()
    holder = FORK.Process(target=hold_and_wait, args=(key, 3, lease, held))
    holder.start()
    assert held.wait(30)
    taken_at = time.monotonic()
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    shared = budget(key, 3, lease)
    assert shared.in_flight() == 3  # the dead process still holds them...
    shared.acquire()  # ...until their lease ends
    waited = time.monotonic() - taken_at
    assert lease - 0.3 <= waited <= lease + 1.5, waited
    assert shared.in_flight() == 1


def pause_then_signal(key: str, seconds: float, paused: Event) -> None:
    budget(key).pause(seconds)
    paused.set()


def test_a_pause_from_one_process_holds_every_other_process_until_it_ends(key: str) -> None:
    paused = FORK.Event()
    pauser = FORK.Process(target=pause_then_signal, args=(key, 1.5, paused))
    pauser.start()
    assert paused.wait(30)
    after_pause = time.monotonic()
    pauser.join()
    shared = budget(key)
    with shared.slot():
        waited = time.monotonic() - after_pause
    assert 1.3 <= waited <= 2.5, waited


def test_a_shorter_pause_does_not_cut_a_longer_one_short(key: str) -> None:
    shared = budget(key)
    shared.pause(1.5)
    shared.pause(0.1)
    start = time.monotonic()
    with shared.slot():
        assert time.monotonic() - start >= 1.3


def test_a_waiter_gets_a_slot_given_back_at_once_rather_than_polling(key: str) -> None:
    shared = budget(key, limit=1)
    token = shared.acquire()
    got: list[float] = []

    def wait_for_slot() -> None:
        budget(key, limit=1).acquire()
        got.append(time.monotonic())

    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    time.sleep(0.3)
    assert not got  # the limit holds
    released = time.monotonic()
    shared.release(token)
    waiter.join(5)
    assert got
    assert got[0] - released < 0.1  # woken, not at its next look (a second later)


def test_a_rate_cap_refuses_the_start_beyond_it_and_gives_its_slot_back(key: str) -> None:
    shared = budget(key, limit=3, per_minute=5)
    for _ in range(5):
        with shared.slot():
            pass
    sixth = threading.Thread(target=shared.acquire, daemon=True)  # waits for the minute to pass
    sixth.start()
    wait_until(lambda: shared.started() == 6, timeout=10, why=lambda: "the sixth never took a slot")
    # The refused start gives its slot back, and holds none while it waits.
    wait_until(lambda: shared.in_flight() == 0, timeout=10, why=lambda: "the refused start kept its slot")
    sixth.join(1.0)
    assert sixth.is_alive()
    assert shared.started() == 6  # and it did not try again meanwhile


def test_an_unreachable_store_is_a_clear_error() -> None:
    shared = RedisBudget("redis://:secret@127.0.0.1:9/0", "nowhere", 3, 30.0)
    with pytest.raises(BudgetUnavailable, match=r"127\.0\.0\.1:9") as raised:
        shared.acquire()
    assert "secret" not in str(raised.value)


def test_a_local_budget_holds_threads_to_its_limit_and_its_pause() -> None:
    shared = LocalBudget(2, 30.0)
    held, most = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal held, most
        for _ in range(20):
            with shared.slot():
                with lock:
                    held += 1
                    most = max(most, held)
                time.sleep(0.002)
                with lock:
                    held -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 2
    assert shared.started() == 120
    shared.pause(0.5)
    start = time.monotonic()
    with shared.slot():
        assert time.monotonic() - start >= 0.45


@pytest.mark.parametrize(("limit", "lease", "per_minute"), [(0, 1.0, None), (1, 0.0, None), (1, 1.0, 0)])
def test_a_budget_that_could_never_hand_out_a_slot_is_refused(
    limit: int, lease: float, per_minute: int | None
) -> None:
    with pytest.raises(ValueError, match=r"at least|more than 0"):
        LocalBudget(limit, lease, per_minute)


def test_in_flight_counts_only_leases_that_have_not_expired(key: str) -> None:
    shared: Budget = budget(key, lease=0.3)
    shared.acquire()
    assert shared.in_flight() == 1
    wait_until(lambda: shared.in_flight() == 0, timeout=3, why=lambda: "the lease did not expire")


def wait_for_a_slot(key: str, waiting: Event) -> None:
    """Wait for the only slot (the process is killed while it waits)."""
    shared = budget(key, limit=1)
    waiting.set()
    shared.acquire()
    time.sleep(600)


def test_a_slot_given_back_goes_to_a_live_waiter_not_to_one_killed_while_waiting(key: str) -> None:
    holder = budget(key, limit=1, lease=60.0)
    token = holder.acquire()
    waiting = FORK.Event()
    doomed = FORK.Process(target=wait_for_a_slot, args=(key, waiting))
    doomed.start()
    assert waiting.wait(30)
    time.sleep(0.3)  # it has queued as a waiter
    assert doomed.pid is not None
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    time.sleep(2.5)  # it has not looked for longer than a live waiter ever goes without
    got: list[float] = []

    def take() -> None:
        budget(key, limit=1, lease=60.0).acquire()
        got.append(time.monotonic())

    alive = threading.Thread(target=take)
    alive.start()
    time.sleep(0.3)
    released = time.monotonic()
    holder.release(token)
    alive.join(5)
    assert got, "the slot went to the dead waiter"
    assert got[0] - released < 0.5
    assert holder.in_flight() == 1


def test_the_rate_cap_keeps_its_window_on_the_servers_clock_not_a_workers(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a worker whose clock ran an hour ahead stamped its starts an hour ahead, and every
    other worker waited that hour before the window let it start."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # this worker's clock is an hour fast
    fast = budget(key, limit=3, per_minute=2)
    for _ in range(2):
        with fast.slot():
            pass
    monkeypatch.undo()
    honest = budget(key, limit=3, per_minute=2)
    token = "honest-worker"
    taken, _, _ = honest._take(token)
    assert taken
    assert not honest._kept_within_rate(token)  # the minute's two starts are taken
    assert honest._until_rate_allows() <= 60  # a minute at most, on the server's clock


@pytest.mark.parametrize("store", ["redis", "local"])
def test_slots_go_to_waiters_in_the_order_they_came_however_often_each_looks(store: str, key: str) -> None:
    """First come, first served, and no newcomer ahead of those waiting (no timing involved).

    Before: a slot given back went to the waiter that had looked least recently (Redis) or to
    whoever looked first (in memory), and a waiter looks again every second: among 200 waiters
    for 3 slots, one waited 15 s while later ones were served.
    """
    shared: Budget = budget(key, limit=1) if store == "redis" else LocalBudget(1, 30.0)
    holder = shared.acquire()
    # Named so that neither their names nor the order of their last looks is the order they came in.
    waiters = ["e", "d", "c", "b", "a"]
    for waiter in waiters:
        assert not shared._take(waiter)[0]
    served: list[str] = []
    held = holder
    for turn in range(len(waiters)):
        shared.release(held)
        # Every waiter looks again, the latest first; a newcomer comes too.
        looking = [f"newcomer-{turn}", *reversed([w for w in waiters if w not in served])]
        takers = [token for token in looking if shared._take(token)[0]]
        assert len(takers) == 1, takers
        served.append(held := takers[0])
    assert served == waiters


@pytest.mark.parametrize("store", ["redis", "local"])
def test_a_waiter_interrupted_while_waiting_passes_on_a_slot_handed_to_it(store: str, key: str) -> None:
    """A time limit (or any exception) while waiting: out of the line, and no slot kept by nobody.

    A slot handed to a waiter that is gone would stay out for good (in memory) or until its lease
    ends (Redis).
    """
    shared: Budget = budget(key, limit=1) if store == "redis" else LocalBudget(1, 30.0)
    holder = shared.acquire()

    def handed_then_interrupted(token: str, seconds: float) -> bool:
        shared.release(holder)  # handed to the waiting token
        raise KeyboardInterrupt("a time limit, say")

    shared._nap = handed_then_interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        shared.acquire()
    assert shared.in_flight() == 0
    assert shared._take("next")[0]
