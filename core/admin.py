"""Admin pages of records: what happened, shown as it was kept, never added or edited by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

__all__ = ("ReadOnlyAdmin",)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A model admin that lists and shows, and may delete, but never adds nor changes a row."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
