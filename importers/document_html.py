"""A stored entity document as HTML for a person to read: pretty-printed, folded, and bounded
whatever the document holds (the admin's entity page shows it)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .jsoncodec import dumps

# How much of a folded entry its summary shows.
PREVIEW_CHARS = 100
# A page shows at most this many entries of a top-level key, each pretty-printed up to this many
# characters: a stored document may hold up to WIKIDATA_MAX_RESPONSE_VALUES values (a million
# empty arrays made a page of 33.6 MB, built in 750 MB), and Wikidata's largest entities have a
# few thousand statements.
MAX_SHOWN_ENTRIES = 2000
MAX_SHOWN_CHARS = 200_000


def _size(encoded: bytes) -> str:
    return f"{len(encoded) / 1024:,.0f} KB" if len(encoded) >= 1024 else f"{len(encoded)} bytes"


def _count(value: list[Any] | dict[str, Any]) -> str:
    noun = "key" if isinstance(value, dict) else "item"
    return f"{len(value):,} {noun}{'' if len(value) == 1 else 's'}"


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[:MAX_SHOWN_CHARS]}\n… ({len(text) - MAX_SHOWN_CHARS:,} more characters not shown)"


def _preview(value: Any) -> str:
    text = dumps(value).decode()
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}…"


def _entries(value: list[Any] | dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The first ``MAX_SHOWN_ENTRIES`` entries of ``value``, each named."""
    if isinstance(value, dict):
        named = ((json.dumps(key, ensure_ascii=False), item) for key, item in value.items())
    else:
        named = ((f"[{index}]", item) for index, item in enumerate(value))
    yield from itertools.islice(named, MAX_SHOWN_ENTRIES)


def _folded(name: str, value: list[Any] | dict[str, Any]) -> SafeString:
    """A top-level key's ``<details>``: its size, then one folded ``<details>`` per entry."""
    entries = format_html_join(
        "",
        '<details class="document-entry"><summary>{}: <span class="document-size">{}</span>'
        '<span class="document-preview">{}</span></summary>'
        '<pre class="document-value">{}</pre></details>',
        (
            (
                entry,
                f"{_count(item)} " if isinstance(item, dict | list) else "",
                _preview(item),
                _pretty(item),
            )
            for entry, item in _entries(value)
        ),
    )
    hidden = len(value) - MAX_SHOWN_ENTRIES
    more = (
        format_html('<p class="document-more">… and {} more not shown</p>', f"{hidden:,}")
        if hidden > 0
        else ""
    )
    return format_html(
        '<details class="document-key"><summary>{}: <span class="document-size">{}, {}</span></summary>'
        "{}{}</details>",
        name,
        _count(value),
        _size(dumps(value)),
        entries,
        more,
    )


def document_html(document: Mapping[str, Any]) -> SafeString:
    """Return the document as HTML, pretty-printed and folded, for a person to read.

    A top-level key holding a non-empty object or array is a closed ``<details>`` whose summary
    gives its size; inside, each entry (a language, a property, a site) is another closed
    ``<details>`` whose summary shows the start of its value, holding the value pretty-printed.
    Other top-level keys are one line each. Folding needs no script: the ``<details>`` element does
    it; two buttons unfold or fold everything at once with importers/document.js.
    """
    parts = []
    for key, value in document.items():
        name = json.dumps(key, ensure_ascii=False)
        if isinstance(value, dict | list) and value:
            parts.append(_folded(name, value))
        else:
            parts.append(format_html('<div class="document-line">{}: {}</div>', name, _pretty(value)))
    return format_html(
        '<div class="wikidata-document"><p class="document-tools">'
        '<button type="button" class="button" data-fold="open">Unfold all</button> '
        '<button type="button" class="button" data-fold="close">Fold all</button></p>{}</div>',
        mark_safe("".join(parts)),  # every part was built by format_html
    )
