"""``follow_wikidata``: keep the stored entities fresh by following Wikidata's recent changes."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import EnqueueFailed
from importers.follow import Follower
from importers.follow.follower import POSITION_ROW, PositionTooOld
from importers.follow.status import describe
from importers.models import FollowPosition


class Command(BaseCommand):
    help = (
        "Follow Wikimedia EventStreams' recentchange stream and re-import the Wikidata entities that change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Import every changed entity, not only the ones already stored.",
        )
        parser.add_argument(
            "--since",
            metavar="ISO-TIME",
            help="Without a saved position, start from the changes since this time (e.g. "
            "2026-12-05T02:00:00Z; the stream keeps 7 days), not from now.",
        )
        parser.add_argument(
            "--status",
            action="store_true",
            help="Show what the running follower last saved (mode, lag percentiles, backlog, the "
            "position's age), and exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        if options["status"]:
            self.show_status()
            return
        since = self.parse_since(options["since"])
        follower = Follower(follow_all=options["all"], since=since)
        with self.stop_on_signals(follower):
            self.follow(follower)

    def parse_since(self, since: str | None) -> str | None:
        """Return ``--since`` as the stream takes it (UTC, ISO 8601), or None."""
        if since is None:
            return None
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            raise CommandError(
                f"--since {since!r} is not an ISO time: give one like 2026-12-05T02:00:00Z."
            ) from None
        if moment.tzinfo is None:
            raise CommandError(
                f"--since {since!r} has no time zone: add Z for UTC, or an offset like +01:00."
            )
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def show_status(self) -> None:
        """Write the status the follower saved with its position, or say that none is saved."""
        row = FollowPosition.objects.filter(pk=POSITION_ROW).first()
        lines = describe(row.status if row is not None else {}, time.time())
        if not lines:
            self.stdout.write("No status saved: no follower has sent a batch here yet.")
            return
        if row is not None:
            self.stdout.write(
                f"Position {row.last_event_id or '(none)'}, saved {row.updated_at.isoformat()}."
            )
        for line in lines:
            self.stdout.write(line)

    @contextlib.contextmanager
    def stop_on_signals(self, follower: Follower) -> Iterator[None]:
        """Within the block, SIGTERM (Heroku's stop) and SIGINT end the follower with its position
        saved; the handlers before are restored after it."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; a caller on another thread calls halt()
            return

        def halt(signum: int, frame: FrameType | None) -> None:
            follower.halt()

        before = {number: signal.signal(number, halt) for number in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for number, handler in before.items():
                signal.signal(number, handler)

    def follow(self, follower: Follower) -> None:
        """Run the follower until a signal stops it; say where it started and where it stopped."""
        if self.verbosity >= 1:
            where = follower.pending.position or (f"since {follower.since}" if follower.since else "now")
            scope = "every entity" if follower.follow_all else "the stored entities"
            self.stdout.write(f"Following {settings.WIKIDATA_STREAM_URL} for {scope}, from {where}.")
        try:
            follower.run()
        except PositionTooOld as error:
            raise CommandError(str(error)) from error
        except EnqueueFailed as error:
            raise CommandError(
                f"Could not send a batch of changes: {error}. The stream position was kept: start "
                "follow_wikidata again once the broker is back, and it resumes there."
            ) from error
        if self.verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Stopped: {follower.sent} ids sent; position {follower.pending.position or '(none)'}."
                )
            )
