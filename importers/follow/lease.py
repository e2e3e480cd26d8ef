"""One follower per deployment: a lease, in the request budget's Redis, held while reading the stream.

Wikimedia allows two stream connections per client address, so a deployment runs one follower;
a second one started (a deploy's overlap, a spare dyno) waits as a standby, trying to take the
lease every ``poll`` seconds. The holder renews it every third of its ``seconds`` on a thread of
its own (``Keeper``) and closes its connection before the lease can have expired when it cannot
renew it: a standby that takes an expired lease never overlaps a living holder's connection, and
a holder killed (SIGKILL, a lost machine) gives the lease up by itself ``seconds`` later.

Without a Redis (``WIKIDATA_LIMITER_URL`` empty: imports in process), nothing is shared to hold a
lease in: ``LocalLease`` is always held, and running one follower is the operator's job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis
from django.conf import settings

from core.redis_urls import safe_url

__all__ = ("Keeper", "Lease", "LeaseUnavailable", "LocalLease", "RedisLease", "lease")

logger = logging.getLogger(__name__)

# The longest a call to Redis may take: the keeper gives the lease up before it can have expired,
# counting this much for the renewal under way.
REDIS_TIMEOUT = 2.0

# Renew the lease if this follower holds it, take it if nobody does; 1: held for PX ms from now.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Give the lease up only if this follower still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseUnavailable(Exception):
    """The lease's store cannot be reached: whether this follower holds it is unknown."""


class Lease:
    """The right to read the stream, for ``seconds`` after each ``take``."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"a lease lasts more than 0 seconds, not {seconds}")
        self.seconds = seconds
        # Who this follower is, for the others and for people: host, process, a random tag.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A standby tries this often: it takes over at most seconds + poll after the holder died.
        self.poll = min(2.0, seconds / 5)

    def take(self) -> bool:
        """Take the lease, or renew it; return whether this follower holds it ``seconds`` from the call.

        Raises:
            LeaseUnavailable: the store cannot be reached.
        """
        raise NotImplementedError

    def release(self) -> None:
        """Give the lease up, if this follower holds it, for a standby to take at once."""

    def holder(self) -> str:
        """Who holds the lease (host, process and a random tag), or '' for nobody or unknown."""
        return ""


class LocalLease(Lease):
    """No shared store: always held (one follower is run by hand)."""

    def take(self) -> bool:
        return True


class RedisLease(Lease):
    """A lease under ``key`` in the Redis at ``url``, on the server's clock."""

    def __init__(self, url: str, key: str, seconds: float) -> None:
        super().__init__(seconds)
        self.url, self.key = url, key
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        self._take = self._client.register_script(_TAKE)
        self._release = self._client.register_script(_RELEASE)

    def take(self) -> bool:
        return bool(
            self._call(lambda: self._take(keys=[self.key], args=[self.token, int(self.seconds * 1000)]))
        )

    def release(self) -> None:
        try:
            self._call(lambda: self._release(keys=[self.key], args=[self.token]))
        except LeaseUnavailable as error:
            logger.warning("Could not give the follower's lease up (it expires by itself): %s", error)

    def holder(self) -> str:
        try:
            value = self._call(lambda: self._client.get(self.key))
        except LeaseUnavailable:
            return ""
        return value.decode() if isinstance(value, bytes) else ""

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except redis.RedisError as error:
            raise LeaseUnavailable(f"{safe_url(self.url)}: {type(error).__name__}: {error}") from error


def lease() -> Lease:
    """The follower's lease: in the budget's Redis (``WIKIDATA_LIMITER_URL``) if there is one, else local."""
    seconds = settings.WIKIDATA_FOLLOW_LEASE_SECONDS
    if not settings.WIKIDATA_LIMITER_URL:
        return LocalLease(seconds)
    return RedisLease(settings.WIKIDATA_LIMITER_URL, f"{settings.WIKIDATA_LIMITER_KEY}:follower", seconds)


class Keeper:
    """Within the block, renews ``lease`` (taken at ``taken_at``, monotonic) on a thread of its own;
    calls ``lost`` once, before the lease can have expired, if it can no longer renew it (another
    took it, or the store stayed out of reach)."""

    def __init__(self, lease: Lease, taken_at: float, lost: Callable[[], None]) -> None:
        self.lease, self.lost = lease, lost
        self.deadline = taken_at + lease.seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="follow-wikidata-lease", daemon=True)

    def __enter__(self) -> Keeper:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        self._thread.join(timeout=REDIS_TIMEOUT * 3)

    def _keep(self) -> None:
        interval = self.lease.seconds / 3
        while not self._stopped.wait(interval):
            sent = time.monotonic()
            try:
                held: bool | None = self.lease.take()
            except LeaseUnavailable as error:
                logger.warning("Could not renew the follower's lease: %s", error)
                held = None
            if held:
                self.deadline = sent + self.lease.seconds
                continue
            # The next renewal, if it is slow, could end after the lease: stop now, while it is held.
            if held is False or time.monotonic() + interval + REDIS_TIMEOUT >= self.deadline:
                logger.warning("The follower's lease is lost (held by %r): it stops reading the stream.",
                               self.lease.holder() or "nobody")  # fmt: skip
                self.lost()
                return
