"""The follower's page in the Django admin, read-only: where it stands and what it last saw of itself."""

from __future__ import annotations

import time

from django.contrib import admin

from core.admin import ReadOnlyAdmin

from ..models import FollowPosition
from .status import describe


@admin.register(FollowPosition)
class FollowPositionAdmin(ReadOnlyAdmin):
    list_display = ("last_event_id", "updated_at", "follower")
    fields = ("last_event_id", "updated_at", "follower")
    readonly_fields = fields

    @admin.display(description="follower (mode, lag, backlog, position's age)")
    def follower(self, position: FollowPosition) -> str:
        """What ``follow_wikidata --status`` shows."""
        return " ".join(describe(position.status, time.time())) or "No status saved yet."
