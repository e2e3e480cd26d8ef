"""The no-op importer whose task method measures what a worker adds to a call."""

from __future__ import annotations

import functools

import redis
from django.conf import settings

from core.importer import BaseImporter, as_task


class BenchNoopImporter(BaseImporter):
    """One task method that does nothing but count itself, so that a benchmark sees it ran."""

    queue = getattr(settings, "BENCH_NOOP_QUEUE", None)  # set by bench.settings

    @as_task
    def tick(self, counter: str) -> None:
        """Increment the Redis key ``counter`` (on the broker's Redis) and nothing else."""
        _redis().incr(counter)


@functools.cache
def _redis() -> redis.Redis:
    # One connection a process, made on first use: after a worker forks, not before.
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)
