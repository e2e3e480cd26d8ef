"""Which recentchange events are changes of Wikidata entities, and of which entity."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..entity_ids import InvalidEntityId, normalize

__all__ = ("Change", "entity_id", "merged_with", "parse_change")

WIKI = "wikidatawiki"
# Wikidata's entity namespaces and the title prefix of each: items, Property:, Lexeme:.
PREFIXES = {0: "", 120: "Property:", 146: "Lexeme:"}
LETTERS = {0: "Q", 120: "P", 146: "L"}
# Recentchange types that make a new revision; "log" (deletions, ...) and others carry none.
REVISION_TYPES = ("edit", "new")
# The autocomment Wikibase starts an edit summary with, on each side of a merge and on a
# redirect's creation; the last id is the other side. As in real events of a merge:
# "/* wbmergeitems-to:0||Q1216649 */ ..." (the source emptied), "/* wbmergeitems-from:0||Q26212910
# */ ..." (the target filled), "/* wbcreateredirect:0||Q26212910|Q1216649 */" (the source redirected).
# A lexeme merge (Special:MergeLexemes, API wblmergelexemes) writes "/* wblmergelexemes-to:0||L2 */"
# on the source, "/* wblmergelexemes-from:0||L1 */" on the target (a user summary may follow), then
# "/* wbcreateredirect:0||L1|L2 */" on the source: from the code, not a recorded event. See
# WikibaseLexeme's src/Interactors/MergeLexemes/MergeLexemesInteractor.php (getSummary: new
# Summary('wblmergelexemes', $direction, null, [the other id])), i18n/en.json
# (wikibase-entity-summary-wblmergelexemes-to/-from), src/DataAccess/Store/MediaWikiLexemeRedirector.php
# (Wikibase's repo/includes/Interactors/EntityRedirectCreationInteractor.php unchanged), and
# Wikibase's repo/includes/SummaryFormatter.php (formatAutoComment: "name:count|language|args").
MERGE_COMMENT = re.compile(
    r"/\* (?:(?:wbmergeitems|wblmergelexemes)-(?:from|to)|wbcreateredirect):\d+\|[^|]*\|([^*]*?) \*/"
)


@dataclass(frozen=True)
class Change:
    """A new revision of a Wikidata entity, or its deletion (``deleted``) or restore (revision 0).

    ``merged_with``: the other side of a merge or redirect this revision is part of (the target,
    for the source's edits; the source, for the target's), or None.
    """

    wikidata_id: str
    revision: int
    deleted: bool = False
    merged_with: str | None = None


def parse_change(data: Mapping[str, Any]) -> Change | None:
    """Return the entity change a recentchange event records, or None for any other event.

    Kept: Wikidata (``wiki == "wikidatawiki"``) edits and creations in the item, property and
    lexeme namespaces (with the other side of a merge or redirect, from the edit's comment),
    and the log events of a page's deletion and restore there (``log_type`` ``delete``,
    ``log_action`` ``delete`` or ``restore``). Dropped: canary events
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
    return Change(wikidata_id, new, merged_with=merged_with(wikidata_id, data.get("comment")))


def merged_with(wikidata_id: str, comment: Any) -> str | None:
    """The other side of the merge or redirect an edit's comment records, or None."""
    found = MERGE_COMMENT.match(comment) if isinstance(comment, str) else None
    if found is None:
        return None
    try:
        other = normalize(found.group(1).rpartition("|")[2])
    except InvalidEntityId:
        return None
    return other if other != wikidata_id else None


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
