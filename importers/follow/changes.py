"""Which recentchange events are changes of Wikidata entities, and of which entity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..entity_ids import InvalidEntityId, normalize

__all__ = ("Change", "entity_id", "parse_change")

WIKI = "wikidatawiki"
# Wikidata's entity namespaces and the title prefix of each: items, Property:, Lexeme:.
PREFIXES = {0: "", 120: "Property:", 146: "Lexeme:"}
LETTERS = {0: "Q", 120: "P", 146: "L"}
# Recentchange types that make a new revision; "log" (deletions, ...) and others carry none.
REVISION_TYPES = ("edit", "new")


@dataclass(frozen=True)
class Change:
    """A new revision of a Wikidata entity, or its deletion (``deleted``) or restore (revision 0)."""

    wikidata_id: str
    revision: int
    deleted: bool = False


def parse_change(data: Mapping[str, Any]) -> Change | None:
    """Return the entity change a recentchange event records, or None for any other event.

    Kept: Wikidata (``wiki == "wikidatawiki"``) edits and creations in the item, property and
    lexeme namespaces, and the log events of a page's deletion and restore there (``log_type``
    ``delete``, ``log_action`` ``delete`` or ``restore``). Dropped: canary events
    (``meta.domain == "canary"``, Wikimedia's monitoring), other wikis, other namespaces, other
    log events, and anything malformed.
    """
    meta = data.get("meta")
    if not isinstance(meta, dict) or meta.get("domain") == "canary" or data.get("wiki") != WIKI:
        return None
    if data.get("type") == "log" and data.get("log_type") == "delete":
        wikidata_id = entity_id(data.get("namespace"), data.get("title"))
        action = data.get("log_action")
        if wikidata_id is None or action not in ("delete", "restore"):
            return None
        return Change(wikidata_id, 0, deleted=action == "delete")
    if data.get("type") not in REVISION_TYPES:
        return None
    wikidata_id = entity_id(data.get("namespace"), data.get("title"))
    revision = data.get("revision")
    new = revision.get("new") if isinstance(revision, dict) else None
    if wikidata_id is None or type(new) is not int:
        return None
    return Change(wikidata_id, new)


def entity_id(namespace: Any, title: Any) -> str | None:
    """Return the entity id of a page title (``Q42``, ``Property:P31``, ``Lexeme:L7``), or None."""
    if type(namespace) is not int or namespace not in PREFIXES or not isinstance(title, str):
        return None
    prefix = PREFIXES[namespace]
    if not title.startswith(prefix) or title[len(prefix) : len(prefix) + 1] != LETTERS[namespace]:
        return None
    try:
        return normalize(title[len(prefix) :])
    except InvalidEntityId:
        return None
