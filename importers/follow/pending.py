"""The changes read from the stream and not sent yet, and the position after them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wikidata_api import MAX_BATCH
from .changes import Change
from .stream import Event

__all__ = ("Pending",)


@dataclass
class Pending:
    """The changes read and not sent yet: each id with its highest revision (0: restored, import
    whatever is there), the ids deleted, the other side of each id's merge or redirect, and the
    position after them."""

    changes: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    merged_with: dict[str, str] = field(default_factory=dict)
    position: str = ""
    # When the first event not saved yet arrived (monotonic); None: nothing to save.
    since: float | None = None
    # When Wikidata made each id's first change not sent yet, and the last event read (Unix times).
    times: dict[str, float] = field(default_factory=dict)
    position_time: float | None = None

    def add(self, event: Event, change: Change | None, now: float, at: float | None = None) -> None:
        """Take an event (made at ``at``, its ``meta.dt``): its position, and its change if any
        (revisions compared, never arrival order)."""
        if event.id is not None:  # one without (a repair's, from the API) leaves the position as it is
            self.position = event.id
            self.position_time = at if at is not None else self.position_time
        if self.since is None:
            self.since = now
        if change is None:
            return
        if change.deleted:  # the page is gone: its revisions with it, until a restore
            self.deleted.add(change.wikidata_id)
            self.changes.pop(change.wikidata_id, None)
            return
        self.deleted.discard(change.wikidata_id)
        if change.merged_with is not None:
            self.merged_with[change.wikidata_id] = change.merged_with
        if at is not None:
            self.times[change.wikidata_id] = min(at, self.times.get(change.wikidata_id, at))
        known = self.changes.get(change.wikidata_id)
        if known is None or change.revision > known:
            self.changes[change.wikidata_id] = change.revision

    def due(self, now: float, seconds: float, full: int = MAX_BATCH) -> bool:
        """Whether to send now: ``full`` ids held, or an unsaved event ``seconds`` old."""
        return self.held >= full or (self.since is not None and now - self.since >= seconds)

    def wait(self, now: float, seconds: float) -> float:
        """How long to wait for the next event before it is time to send (1 s at most)."""
        return 1.0 if self.since is None else max(0.0, min(1.0, self.since + seconds - now))

    @property
    def held(self) -> int:
        """How many ids wait to be sent (changed or deleted)."""
        return len(self.changes) + len(self.deleted)
