"""A request budget shared by every process that uses one store: slots in flight, a common pause, a rate.

An importer that calls someone else's API takes a slot before each request and gives it back
when the answer is read (``with budget.slot(): ...``). At most ``limit`` slots are out at once
across every process sharing the store; an answer that asks clients to back off (a 429 with
``Retry-After``) pauses them all (``budget.pause(seconds)``): no slot is handed out, by any
process, before the pause ends. ``per_minute`` optionally caps how many slots start a minute.

Two stores: Redis (``RedisBudget``), for workers on any number of machines, and this process's
memory (``LocalBudget``), for imports that run in process. A slot in Redis is a *lease*: it
expires by itself ``lease_seconds`` after it was taken, so that a process killed while holding
slots (SIGKILL, a lost machine) cannot shrink the budget for good. The caller must make sure a
request ends before its lease does (a deadline shorter than the lease); then an expired lease
was always a dead process's, and the count can never go over the limit.

Waiters are served in the order they came (first come, first served), in both stores: a slot
given back goes to the longest waiter, and no newcomer takes a free slot ahead of those waiting.
In-flight leases, their hand-over to the longest waiter and the common pause need an atomic
check-and-take on the server's own clock, which no rate-limiting library offers: they are a few
short Lua scripts. The per-minute rate, where it is wanted, is the ``limits`` library's moving
window, on the same store, kept on the server's clock too (``ServerClockStorage``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from .redis_urls import safe_url

__all__ = ("Budget", "BudgetUnavailable", "LocalBudget", "RedisBudget", "release_held")

logger = logging.getLogger(__name__)

# A waiter that was not woken looks again this often: a lease that expired (its process died)
# frees its slot without anyone saying so.
LONGEST_NAP = 1.0
# A waiter that has not looked again for this long (or this long after a pause) is taken for dead.
STALE = 2 * LONGEST_NAP


class BudgetUnavailable(Exception):
    """The budget's store (Redis) cannot be reached: no slot can be handed out."""


class Budget:
    """At most ``limit`` requests in flight, a pause all share, and optionally ``per_minute`` starts.

    Subclasses keep the state: ``_take`` hands out a slot or says how long to wait.
    """

    # Whether other processes share it.
    shared = False

    def __init__(self, limit: int, lease_seconds: float, per_minute: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"a budget needs at least 1 slot, not {limit}")
        if lease_seconds <= 0:
            raise ValueError(f"a lease lasts more than 0 seconds, not {lease_seconds}")
        if per_minute is not None and per_minute < 1:
            raise ValueError(f"per_minute must be at least 1 (or None: no rate cap), not {per_minute}")
        self.limit = limit
        self.lease_seconds = lease_seconds
        self.per_minute = per_minute
        self._rate = RateLimitItemPerMinute(per_minute) if per_minute else None
        self._rate_limiter: MovingWindowRateLimiter | None = None
        self._announced_pause = 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block: wait for it (and any pause), give it back at the end.

        Raises:
            BudgetUnavailable: the store cannot be reached.
        """
        token = self.acquire()
        with _held_lock:
            _held[token] = self
        try:
            yield
        finally:
            with _held_lock:
                _held.pop(token, None)
            try:
                self.release(token)
            except BudgetUnavailable as error:  # the lease runs out by itself
                logger.warning("Could not give a slot back: %s", error)

    def acquire(self) -> str:
        """Wait for a slot, and for any pause to end; return the slot's token for ``release``.

        Raises:
            BudgetUnavailable: the store cannot be reached.
        """
        token = uuid.uuid4().hex
        try:
            while True:
                taken, wait, paused = self._take(token)
                if taken and self._kept_within_rate(token):
                    return token
                if taken:  # over the rate: the slot went back to others until the window moves on
                    time.sleep(self._until_rate_allows())
                elif paused:
                    self._announce(wait)
                    time.sleep(wait)
                elif self._nap(token, min(wait, LONGEST_NAP)) and self._kept_within_rate(token):
                    return token  # handed over by the process that gave it back
        except BaseException:
            # Interrupted while waiting (a time limit, a store failure): out of the line, and a
            # slot handed over meanwhile goes on to the next waiter.
            with contextlib.suppress(BudgetUnavailable):
                self._leave(token)
            raise

    def release(self, token: str) -> None:
        """Give a slot back (a lease that already expired is no longer counted: nothing to do)."""
        raise NotImplementedError

    def pause(self, seconds: float) -> None:
        """Hand out no slot, to anyone sharing the budget, for ``seconds`` from now (a longer pause stays)."""
        raise NotImplementedError

    def in_flight(self) -> int:
        """How many slots are out now."""
        raise NotImplementedError

    def started(self) -> int:
        """How many slots were handed out so far (by every process): a counter for rates."""
        raise NotImplementedError

    def _take(self, token: str) -> tuple[bool, float, bool]:
        """Take a slot for ``token`` if one is free and no pause runs.

        Returns ``(taken, seconds to wait, paused)``.
        """
        raise NotImplementedError

    def _nap(self, token: str, seconds: float) -> bool:
        """Wait up to ``seconds``, or until a slot is given back; return whether it is ``token``'s now."""
        raise NotImplementedError

    def _leave(self, token: str) -> None:
        """Take ``token`` out of the line of waiters, and give back a slot it was handed."""
        raise NotImplementedError

    def _rate_storage(self) -> Storage:
        raise NotImplementedError

    def _kept_within_rate(self, token: str) -> bool:
        """Whether a start now is within the rate; if not (or the store fails), give the slot back."""
        if self._rate is None:
            return True
        if self._rate_limiter is None:
            self._rate_limiter = MovingWindowRateLimiter(self._rate_storage())
        try:
            within = self._rate_limiter.hit(self._rate, self._rate_key)
        except StorageError as error:
            self.release(token)
            raise BudgetUnavailable(f"the request budget's rate store failed: {error}") from None
        if not within:
            self.release(token)
        return within

    def _until_rate_allows(self) -> float:
        assert self._rate is not None
        assert self._rate_limiter is not None
        stats = self._rate_limiter.get_window_stats(self._rate, self._rate_key)
        return max(stats.reset_time - self._rate_clock(), 0.01)

    def _rate_clock(self) -> float:
        """The clock the rate's store keeps its window on."""
        return time.time()

    @property
    def _rate_key(self) -> str:
        return "starts"

    def _announce(self, seconds: float) -> None:
        """Log a pause once per process (each waiter would otherwise say the same)."""
        until = time.monotonic() + seconds
        if until > self._announced_pause + 0.5:
            logger.warning("The request budget is paused (the server asked for it): waiting %.1f s", seconds)
        self._announced_pause = max(self._announced_pause, until)


class LocalBudget(Budget):
    """A budget in this process's memory, for threads of one process (the embedded mode).

    A thread cannot die holding a slot (``slot()`` gives it back whatever happens), so slots
    here are not leases. Waiters line up in the order they came: a slot given back goes to the
    first of them, and nobody takes a free slot ahead of those waiting.
    """

    def __init__(self, limit: int, lease_seconds: float, per_minute: int | None = None) -> None:
        super().__init__(limit, lease_seconds, per_minute)
        self._changed = threading.Condition()
        self._tokens: set[str] = set()
        self._waiters: list[str] = []  # in the order they came
        self._paused_until = 0.0
        self._started = 0
        self._storage: MemoryStorage | None = None

    def release(self, token: str) -> None:
        with self._changed:
            if token not in self._tokens:
                return
            self._tokens.discard(token)
            if self._waiters and self._paused_until <= time.monotonic():
                self._hand(self._waiters.pop(0))  # to the longest waiter
            self._changed.notify_all()

    def pause(self, seconds: float) -> None:
        with self._changed:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def in_flight(self) -> int:
        with self._changed:
            return len(self._tokens)

    def started(self) -> int:
        with self._changed:
            return self._started

    def _nap(self, token: str, seconds: float) -> bool:
        with self._changed:
            # Checked under the lock a release takes: a slot handed over just before is not missed.
            if token not in self._tokens:
                self._changed.wait(seconds)
            return token in self._tokens

    def _leave(self, token: str) -> None:
        with self._changed:
            if token in self._waiters:
                self._waiters.remove(token)
        self.release(token)

    def _take(self, token: str) -> tuple[bool, float, bool]:
        with self._changed:
            if token in self._tokens:  # handed over
                return True, 0.0, False
            now = time.monotonic()
            queued = token in self._waiters
            if self._paused_until > now:
                if not queued:
                    self._waiters.append(token)
                return False, self._paused_until - now, True
            ahead = self._waiters.index(token) if queued else len(self._waiters)
            if ahead < self.limit - len(self._tokens):
                if queued:
                    self._waiters.remove(token)
                self._hand(token)
                return True, 0.0, False
            if not queued:
                self._waiters.append(token)
            return False, LONGEST_NAP, False

    def _hand(self, token: str) -> None:
        self._tokens.add(token)
        self._started += 1

    def _rate_storage(self) -> Storage:
        if self._storage is None:
            self._storage = MemoryStorage()
        return self._storage


class ServerClockStorage(RedisStorage):
    """``limits``' Redis store, its moving window kept on the Redis server's clock.

    ``limits`` stamps each start with the client's ``time.time()``: a worker whose clock ran an
    hour ahead stamped starts an hour ahead, and every other worker waited that hour before the
    window let it start again. Here every stamp, and every look at the window, takes the
    server's time (``TIME``), so machines whose clocks disagree still agree on the window.
    """

    def now(self) -> float:
        client: Any = self.get_connection()  # limits' protocol type lacks TIME
        seconds, microseconds = client.time()
        return float(seconds) + float(microseconds) / 1_000_000

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        acquired = self.lua_acquire_moving_window(
            [self.prefixed_key(key)], [self.now(), limit, expiry, amount]
        )
        return bool(acquired)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = self.now()
        if window := self.lua_moving_window([self.prefixed_key(key)], [now - expiry, limit]):
            return float(window[0]), window[1]
        return now, 0


# The scripts read the Redis server's clock, so machines whose clocks disagree still agree on
# who holds what. Waiters line up in ``waiters``, scored by a ticket drawn when they first came
# (``ticket``, a counter): a slot given back goes straight to the first of them, whose own
# ``wake:TOKEN`` list it pushes onto, and nobody takes a free slot ahead of those waiting. Each
# look of a waiter sets in ``seen`` when it is to be taken for dead (killed while waiting) and
# dropped from the line: STALE after this look, or after the pause it sleeps through.

# KEYS: leases (a sorted set: token -> expiry, ms), pause (its end, ms), started (a counter),
# waiters (a sorted set: token -> ticket), wake (the waiter's list), seen (a sorted set: token ->
# when it is dead, ms), ticket (a counter). ARGV: limit, lease ms, token, nap ms, stale ms.
# Returns {taken, ms to wait, paused}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('DEL', KEYS[5])
  return {1, 0, 0}
end
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)) do
  redis.call('ZREM', KEYS[4], dead)
  redis.call('ZREM', KEYS[6], dead)
end
local queued = redis.call('ZSCORE', KEYS[4], ARGV[3])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local wait = pause - now
if pause <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
  local ahead = queued and redis.call('ZRANK', KEYS[4], ARGV[3]) or redis.call('ZCARD', KEYS[4])
  if ahead < free then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('INCR', KEYS[3])
    redis.call('ZREM', KEYS[4], ARGV[3])
    redis.call('ZREM', KEYS[6], ARGV[3])
    return {1, 0, 0}
  end
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(ARGV[4])
  if #first > 0 then wait = math.min(math.max(tonumber(first[2]) - now, 1), wait) end
end
if not queued then redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[7]), ARGV[3]) end
local dead = math.max(pause, now) + tonumber(ARGV[5])
redis.call('ZADD', KEYS[6], dead, ARGV[3])
local keep = math.max(tonumber(ARGV[2]), dead - now)
for i = 4, 7 do if i ~= 5 then redis.call('PEXPIRE', KEYS[i], keep) end end
return {0, wait, pause > now and 1 or 0}
"""

# KEYS: leases, pause, started, waiters, seen. ARGV: token, limit, lease ms, the wake lists'
# prefix (a waiter's list is named from its token, so it cannot be declared beforehand: fine on
# one Redis server, not on a cluster). Hands the slot to the first waiter unless a pause runs,
# or the slot was no longer counted (its lease had run out, and someone else may hold it now).
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') > now then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
while true do
  local waiter = redis.call('ZPOPMIN', KEYS[4])
  if #waiter == 0 then return 0 end
  local dead = tonumber(redis.call('ZSCORE', KEYS[5], waiter[1]) or '0')
  redis.call('ZREM', KEYS[5], waiter[1])
  if dead > now then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), waiter[1])
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    redis.call('INCR', KEYS[3])
    local wake = ARGV[4] .. waiter[1]
    redis.call('RPUSH', wake, 1)
    redis.call('PEXPIRE', wake, ARGV[3])
    return 1
  end
end
"""

# KEYS: pause. ARGV: ms. Extends the pause to now + ms, never shortens it.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local till = now + tonumber(ARGV[1])
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > pause then redis.call('SET', KEYS[1], till, 'PX', ARGV[1]) end
return 1
"""

# KEYS: leases. Counts the leases that have not expired.
_IN_FLIGHT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


# The slots this process holds in ``slot()`` blocks, by token: given back by ``release_held``
# when the process is ended in the middle of one.
_held: dict[str, Budget] = {}
_held_lock = threading.Lock()


def release_held() -> int:
    """Give back every slot this process holds; return how many. Never raises.

    For a process about to be ended mid-task (a worker's cold shutdown): without it, its slots
    stay out until their leases end (``WIKIDATA_ATTEMPT_DEADLINE`` + 1 s, 41 s by default), and
    no request starts from any worker meanwhile if they were all of them.
    """
    with _held_lock:
        held = list(_held.items())
        _held.clear()
    for token, budget in held:
        try:
            budget.release(token)
        except Exception as error:  # the lease runs out by itself
            logger.warning("Could not give a slot back: %s", error)
    return len(held)


class RedisBudget(Budget):
    """A budget in Redis at ``url``, under keys starting with ``key``: shared by every process using them."""

    shared = True

    def __init__(
        self, url: str, key: str, limit: int, lease_seconds: float, per_minute: int | None = None
    ) -> None:
        super().__init__(limit, lease_seconds, per_minute)
        self.url = url
        self.key = key
        self._lease_ms = max(int(lease_seconds * 1000), 1)
        # A client per process, made on first use: after a worker forks, not before.
        self._client: redis.Redis | None = None
        self._client_pid = 0
        self._scripts: dict[str, Any] = {}
        self._storage: RedisStorage | None = None

    @property
    def _keys(self) -> dict[str, str]:
        names = ("leases", "pause", "started", "waiters", "seen", "ticket")
        return {name: f"{self.key}:{name}" for name in names}

    def _wake(self, token: str) -> str:
        return f"{self.key}:wake:{token}"

    def release(self, token: str) -> None:
        k = self._keys
        self._run(
            _RELEASE,
            [k["leases"], k["pause"], k["started"], k["waiters"], k["seen"]],
            [token, self.limit, self._lease_ms, self._wake("")],
        )

    def pause(self, seconds: float) -> None:
        self._run(_PAUSE, [self._keys["pause"]], [max(int(seconds * 1000), 1)])

    def in_flight(self) -> int:
        return int(self._run(_IN_FLIGHT, [self._keys["leases"]], []))

    def started(self) -> int:
        return int(self._call(lambda client: client.get(self._keys["started"])) or 0)

    def _take(self, token: str) -> tuple[bool, float, bool]:
        k = self._keys
        taken, wait_ms, paused = self._run(
            _TAKE,
            [k["leases"], k["pause"], k["started"], k["waiters"], self._wake(token), k["seen"], k["ticket"]],
            [self.limit, self._lease_ms, token, int(LONGEST_NAP * 1000), int(STALE * 1000)],
        )
        return bool(taken), int(wait_ms) / 1000, bool(paused)

    def _nap(self, token: str, seconds: float) -> bool:
        wake = self._wake(token)
        return self._call(lambda client: client.blpop([wake], timeout=max(seconds, 0.001))) is not None

    def _leave(self, token: str) -> None:
        k = self._keys
        self._call(lambda client: client.zrem(k["waiters"], token))
        self.release(token)  # a slot handed over before it left goes on to the next waiter

    def _rate_storage(self) -> Storage:
        if self._storage is None:
            self._storage = ServerClockStorage(self.url, key_prefix=self.key, wrap_exceptions=True)
        return self._storage

    def _rate_clock(self) -> float:
        storage = self._rate_storage()
        assert isinstance(storage, ServerClockStorage)
        return storage.now()

    @property
    def _rate_key(self) -> str:
        return f"{self.key}:starts"

    def _redis(self) -> redis.Redis:
        if self._client is None or self._client_pid != os.getpid():
            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=10)
            self._client_pid = os.getpid()
            self._scripts = {}
        return self._client

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        def run(client: redis.Redis) -> Any:
            if script not in self._scripts:
                self._scripts[script] = client.register_script(script)
            return self._scripts[script](keys=keys, args=args)

        return self._call(run)

    def _call(self, action: Any) -> Any:
        try:
            return action(self._redis())
        except redis.RedisError as error:
            message = f"the request budget's Redis ({safe_url(self.url)}) failed: {error}"
            raise BudgetUnavailable(message) from None
