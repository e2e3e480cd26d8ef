"""Wikidata entity ids: validation, and reading them from command-line arguments or a file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from core.lines import bounded_lines

__all__ = (
    "ENTITY_ID",
    "ENTITY_ID_PATTERN",
    "ENTITY_NUMBER",
    "MAX_ID_LENGTH",
    "MAX_LINE_BYTES",
    "InvalidEntityId",
    "SourcedId",
    "normalize",
    "read_ids",
    "shown",
)

# Items (Q), properties (P) and lexemes (L): what Special:EntityData serves for an import. The
# one definition of an entity id: the dump's line reader, filters and --where build on it.
ENTITY_NUMBER = r"[1-9][0-9]{0,11}"
ENTITY_ID_PATTERN = rf"[QPL]{ENTITY_NUMBER}"
ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
# The longest id ENTITY_ID accepts: anything longer is refused before it is looked at.
MAX_ID_LENGTH = 13
# The longest line of an id file that is read: an id, and room for a comment. Of a longer line
# only this much is kept (the rest is read and dropped), so that a file without line breaks
# cannot fill the memory; its comment may go on, unread.
MAX_LINE_BYTES = 1024
# Of a value that is not an id, messages repeat at most this many characters (and say how many
# there were): a message must not carry whatever a file or a caller sent.
ECHOED_CHARACTERS = 20
# What some editors write at the start of a UTF-8 file; it is not part of the first id.
UTF8_BOM = b"\xef\xbb\xbf"


class InvalidEntityId(ValueError):
    """Not a Wikidata entity id."""


@dataclass(frozen=True)
class SourcedId:
    """A raw id and where it came from, e.g. ``line 12`` of a file.

    ``unreadable`` says why a line could not be read as an id at all (not UTF-8, too long);
    ``raw`` is empty then.
    """

    raw: str
    origin: str
    unreadable: str | None = None

    def normalized(self) -> str:
        """Return the canonical form of the id (see ``normalize``).

        Raises:
            InvalidEntityId: the line was unreadable, or ``raw`` is not an id.
        """
        if self.unreadable is not None:
            raise InvalidEntityId(self.unreadable)
        return normalize(self.raw)


def shown(raw: str) -> str:
    """Return ``raw`` quoted for a message: whole when short, else its first characters and its length."""
    if len(raw) <= ECHOED_CHARACTERS:
        return repr(raw)
    return f"{raw[:ECHOED_CHARACTERS]!r}... ({len(raw)} characters)"


def normalize(raw: str) -> str:
    """Return the canonical form of an entity id: ``q1022`` becomes ``Q1022``.

    Raises:
        InvalidEntityId: ``raw`` is not an item, property or lexeme id; the message quotes at
            most the first few characters of it.
    """
    candidate = raw.strip()
    if len(candidate) > MAX_ID_LENGTH or not ENTITY_ID.fullmatch(candidate.upper()):
        raise InvalidEntityId(f"{shown(raw)} is not a Wikidata id (Q, P or L and a number, e.g. Q1022)")
    return candidate.upper()


def read_ids(file: IO[bytes], origin: str = "line") -> Iterator[SourcedId]:
    """Yield the ids in a file opened in binary, one a line, skipping blank lines and ``#`` comments.

    Streams, and keeps at most ``MAX_LINE_BYTES`` of any line: memory stays flat whatever the
    file holds. A UTF-8 byte order mark at the start is skipped. A line whose id part (before
    ``#``) is not UTF-8, or that is longer than ``MAX_LINE_BYTES`` without a ``#`` in its first
    ``MAX_LINE_BYTES``, is yielded as ``unreadable``, with the reason.
    """
    for number, line in enumerate(bounded_lines(file, MAX_LINE_BYTES), start=1):
        head, length = line.head.removesuffix(b"\n"), line.length
        where = f"{origin} {number}"
        if number == 1 and head.startswith(UTF8_BOM):
            head, length = head[len(UTF8_BOM) :], length - len(UTF8_BOM)
        # "#" is one byte in UTF-8 and never part of another character's bytes.
        content, comment, _ = head.partition(b"#")
        if length > MAX_LINE_BYTES and not comment:
            yield SourcedId("", where, f"a line of {length} bytes, longer than {MAX_LINE_BYTES}: not an id")
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = content[error.start]
            yield SourcedId("", where, f"not UTF-8 text (byte {error.start + 1} of the line is {byte:#04x})")
            continue
        text = text.strip()
        if text:
            yield SourcedId(text, where)
