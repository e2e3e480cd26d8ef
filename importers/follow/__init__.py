"""Following Wikidata: read EventStreams' recentchange stream, and send the changed entities as batch imports.

One module per job: ``stream`` reads the server-sent events, ``changes`` says which are entity
changes, ``pending`` holds them until they are sent, ``follower`` sends them and saves the position.
"""

from .changes import Change, parse_change
from .follower import Follower
from .pending import Pending
from .stream import Disconnected, Event, EventStream, read_events

__all__ = (
    "Change",
    "Disconnected",
    "Event",
    "EventStream",
    "Follower",
    "Pending",
    "parse_change",
    "read_events",
)
