"""Importing one chunk of a dump: its lines read, filtered, checked and written, with its counts, at once.

A chunk is done, with its rows and counts, in the same commit, or not at all: a worker killed
mid-chunk leaves nothing of it, and the chunk redone counts each line once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.lines import SKIPPED_PIECE, bounded_lines

from ..documents import MAX_DEPTH, MAX_TYPE_LENGTH, UnusableDocument, check, summarize
from ..entity_ids import ENTITY_ID, InvalidEntityId, SourcedId, read_ids
from ..models import ChunkStatus, DumpChunk
from ..revisions import is_newer
from .lines import Filters, entity_text, head_of, with_maps_as_objects
from .slices import SliceUnreadable, inflated
from .sources import RemoteUnusable, open_source, shown
from .storage import Row, Staging, stored_revisions

__all__ = ("ChunkCounts", "ChunkUnreadable", "filters_of", "import_chunk", "read_lines")

# A chunk's bad lines are all counted; the first ones are kept, with why, for people to look at.
MAX_LISTED_BAD = 100
MAX_REASON = 200
# Lines are looked up in the table (their stored revisions) this many at a time: few queries,
# and a bounded batch in memory whatever the chunk's size.
BATCH_LINES = 1000
BATCH_BYTES = 8 * 1024 * 1024
# What nests_within keeps of a line: its brackets.
NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# A number's exponent of five digits or more: PostgreSQL's jsonb (numeric) holds at most 131,072
# digits before the point and 16,383 after, and refuses the rest, failing the chunk's whole upsert.
# A value, not a GUID's "855e-655584" inside a string: it follows a colon, a comma or a bracket.
LONG_EXPONENT = re.compile(rb"[:,\[]\s*-?\d+(?:\.\d+)?[eE]([+-]?\d{5,})")
EXPONENTS = range(-16383, 131072)
# LONG_EXPONENT tries a match at every colon, comma and bracket: more than parsing the line costs.
# A long exponent's digits, e and sign are still there, in place, in the line with every digit
# made 0, e and E made e, + and - made -, and the rest made spaces: "0e00000" or "0e-00000".
# Few lines hold either (a hash within a string may); LONG_EXPONENT is tried only where one is.
# (Deleting the other marks instead joined "lastrevid":2… into e2…: every line looked like one.)
_SHAPE_OF = {
    **dict.fromkeys(b"0123456789", ord("0")),
    ord("e"): ord("e"),
    ord("E"): ord("e"),
    ord("+"): ord("-"),
}
NUMBER_SHAPES = bytes(_SHAPE_OF.get(byte, byte if byte == ord("-") else ord(" ")) for byte in range(256))
LONG_EXPONENT_SHAPES = (b"0e00000", b"0e-00000")


class ChunkUnreadable(Exception):
    """A chunk's file is missing, or no longer holds the lines the command cut."""


@dataclass
class ChunkCounts:
    """What became of a chunk's lines: entity lines read, matched, written, unchanged, bad (with why)."""

    entities: int = 0
    matched: int = 0
    written: int = 0
    bad: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    # The bad lines of the batch being read (at most BATCH_LINES), found out of order (an overlong
    # line before a line above it that does not parse): the first kept by keep_bad_lines().
    batch_bad: list[tuple[int, str]] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.matched - self.written

    def add_bad(self, number: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < MAX_LISTED_BAD:
            self.batch_bad.append((number, reason[:MAX_REASON]))

    def keep_bad_lines(self) -> None:
        """Keep the first bad lines of the batch, by line number (the chunk keeps the first 100)."""
        self.bad_lines += sorted(self.batch_bad)[: MAX_LISTED_BAD - len(self.bad_lines)]
        self.batch_bad = []


def read_lines(
    path: str, start: int, end: int, first_line: int, max_bytes: int
) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number, line)`` for the lines of ``path`` from byte ``start`` to ``end``; None: overlong.

    A line of more than ``max_bytes`` is read in pieces and dropped, never held whole.

    Raises:
        ChunkUnreadable: the file is missing, or ends before ``end``.
    """
    with _opened(path) as file:
        file.seek(start)
        short = f"{path} ends at byte {{}}, before the chunk's end ({end})"
        yield from _lines(file, end - start, first_line, max_bytes, short, start)


def read_slice_lines(
    location: str, start: int, end: int, max_bytes: int, size: int, version: int
) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number in the slice, line)`` for the lines of the members of ``location[start:end]``.

    ``location`` is a path or a URL (``importers.dump.sources``) of a dump of ``size`` bytes and
    ``version``, as the import began with.

    Raises:
        ChunkUnreadable: the file is missing or changed, or its bytes there are not whole gzip members.
    """
    try:
        with open_source(location, size, version, end) as file:  # a URL: one request, to the slice's end
            yield from _lines(inflated(file, start, end), None, 1, max_bytes, "", 0)
    except FileNotFoundError:
        raise ChunkUnreadable(
            f"{location} does not exist: workers must see the dump at the same path"
        ) from None
    except (SliceUnreadable, RemoteUnusable) as error:
        raise ChunkUnreadable(f"{shown(location)}, bytes {start} to {end}: {error}") from None


@contextlib.contextmanager
def _opened(path: str) -> Iterator[IO[bytes]]:
    try:
        file = open(path, "rb", buffering=SKIPPED_PIECE)  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise ChunkUnreadable(
            f"{path} does not exist: workers must see the dump and its chunk directory at the same path "
            "as the command"
        ) from None
    with file:
        yield file


def _lines(
    file: IO[bytes], size: int | None, first_line: int, max_bytes: int, short: str, offset: int
) -> Iterator[tuple[int, bytes | None]]:
    """The lines of the next ``size`` bytes of ``file`` (None: to its end), numbered from ``first_line``;
    None for a line longer than ``max_bytes``.

    ``short`` is the error when the file ends before ``size`` bytes, with ``{}`` for the position
    (``offset`` plus the bytes read).
    """
    read = 0
    for number, line in enumerate(bounded_lines(file, max_bytes, size), start=first_line):
        read += line.read
        yield number, (line.head if line.length <= max_bytes else None)
    if size is not None and read < size:
        raise ChunkUnreadable(short.format(offset + read))


def import_chunk(chunk: DumpChunk, task_id: str | None) -> ChunkCounts | None:
    """Import a chunk's lines and mark it done, in one transaction; return its counts (None: done already).

    Raises:
        ChunkUnreadable: its file is missing or shorter than the chunk.
        OperationalError, InterfaceError: the database became unavailable (nothing was kept).
    """
    filters = filters_of(chunk.dump.filters)
    language = settings.WIKIDATA_LANGUAGE
    max_bytes = settings.WIKIDATA_DUMP_MAX_LINE_BYTES
    now = timezone.now()
    with transaction.atomic():
        # Two deliveries of one chunk at once: the second waits here, then finds it done.
        locked = DumpChunk.objects.select_for_update().get(pk=chunk.pk)
        if locked.status == ChunkStatus.DONE:
            return None
        counts = ChunkCounts()
        staging = Staging()
        end = chunk.start + chunk.bytes
        if chunk.is_slice:
            dump = chunk.dump
            lines = read_slice_lines(chunk.file, chunk.start, end, max_bytes, dump.size, dump.mtime_ns)
        else:
            lines = read_lines(chunk.file, chunk.start, end, chunk.first_line, max_bytes)
        last = chunk.first_line - 1
        for batch in _batches(lines):
            last = batch[-1][0]
            _import_batch(batch, filters, language, max_bytes, counts, staging)
            counts.keep_bad_lines()
        read = last - chunk.first_line + 1
        if not chunk.is_slice and read != chunk.lines:
            raise ChunkUnreadable(f"{chunk.file} holds {read} lines, not {chunk.lines}")
        counts.written = staging.upsert(now)
        DumpChunk.objects.filter(pk=chunk.pk).update(
            status=ChunkStatus.DONE,
            lines=read,
            entities=counts.entities,
            matched=counts.matched,
            written=counts.written,
            unchanged=counts.unchanged,
            bad=counts.bad,
            bad_lines=counts.bad_lines,
            error="",
            task_id=task_id or "",
            updated_at=now,
        )
    return counts


def _batches(lines: Iterable[tuple[int, bytes | None]]) -> Iterator[list[tuple[int, bytes | None]]]:
    batch: list[tuple[int, bytes | None]] = []
    size = 0
    for number, line in lines:
        batch.append((number, line))
        size += len(line) if line is not None else 0
        if len(batch) >= BATCH_LINES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _import_batch(
    batch: list[tuple[int, bytes | None]],
    filters: Filters,
    language: str,
    max_bytes: int,
    counts: ChunkCounts,
    staging: Staging,
) -> None:
    """Count, filter and stage a batch of lines; those whose revision is stored are skipped unparsed."""
    entries = []
    for number, line in batch:
        if line is None:
            counts.entities += 1
            counts.add_bad(number, f"longer than {max_bytes} bytes (WIKIDATA_DUMP_MAX_LINE_BYTES): not read")
            continue
        text = entity_text(line)
        if text is None:
            continue
        counts.entities += 1
        head = head_of(text)
        if filters.passes_head(head) and filters.passes_text(text):
            entries.append((number, text, head))
    stored = stored_revisions(
        [
            head.entity_id
            for _, _, head in entries
            if head.entity_id is not None and head.lastrevid is not None
        ]
    )
    for number, text, head in entries:
        entity_id = head.entity_id
        skip = entity_id in stored and not is_newer(head.lastrevid, stored[entity_id or ""])
        if skip and not filters.where:
            counts.matched += 1  # the head told the type and id: the filters are decided
            continue
        _import_line(number, text, filters, language, counts, staging, parse_only=skip)


def _import_line(
    number: int,
    text: bytes,
    filters: Filters,
    language: str,
    counts: ChunkCounts,
    staging: Staging,
    parse_only: bool,
) -> None:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        counts.add_bad(number, f"not JSON: {error}")
        return
    if type(document) is not dict:
        counts.add_bad(number, f"not an entity: a JSON {type(document).__name__}")
        return
    if not filters.matches(document):
        return
    if parse_only:  # matched, and its revision is stored: nothing to write
        counts.matched += 1
        return
    entity_id = document.get("id")
    if type(entity_id) is not str or not ENTITY_ID.fullmatch(entity_id):
        counts.add_bad(number, f"id is {entity_id!r:.40}, not an entity id (Q1, P31, L7)")
        return
    try:
        turned = with_maps_as_objects(document, text)
        check_parsed(document, text)
        summary = summarize(document, language)
        # The line itself is the document's JSON, but where it had to be turned in depth: the
        # database parses it either way, and encoding it again was a tenth of a line's cost.
        data = turned if turned is not None else orjson.dumps(document)
    except (UnusableDocument, orjson.JSONEncodeError, TypeError) as error:
        counts.add_bad(number, f"{entity_id}: {error}")
        return
    counts.matched += 1
    staging.add(
        Row(
            entity_id,
            summary.entity_type,
            summary.label,
            summary.description,
            data,
            summary.lastrevid,
            summary.modified,
        )
    )


def check_parsed(document: dict[str, Any], text: bytes) -> None:
    """``documents.check(document)``, the walk over every value left out where the text shows it would pass.

    orjson, which parsed ``text``, refuses NaN, infinities and lone surrogates; what is left to
    find is a NUL (written ``\\u0000`` in JSON), nesting deeper than ``MAX_DEPTH``, and a number
    that orjson reads (``1e-1000000`` as 0.0) but the database refuses in the text. That walk
    is most of a line's cost; these tests of the text are not.

    Raises:
        UnusableDocument: as ``check`` does.
    """
    for exponent in long_exponents(text):
        if int(exponent) not in EXPONENTS:
            raise UnusableDocument(
                f"a number's exponent, {exponent.decode()}, is beyond what the database stores"
            )
    if b"\\u0000" in text or not nests_within(text, MAX_DEPTH):
        check(document)  # the exact walk, which decides, and says where
        return
    entity_type = document.get("type")
    if not isinstance(entity_type, str) or len(entity_type) > MAX_TYPE_LENGTH:
        check(document)


def long_exponents(text: bytes) -> Iterator[bytes]:
    """Yield the exponent of each number of the JSON ``text`` whose exponent has five digits or more.

    Only where the line's shapes show one (see ``NUMBER_SHAPES``) is LONG_EXPONENT tried, from
    the colon, comma or bracket before it: a hash or GUID in a string that looks like one fails
    it there, and the rest of the line is never scanned.
    """
    shapes = text.translate(NUMBER_SHAPES)
    for shape in LONG_EXPONENT_SHAPES:
        at = shapes.find(shape)  # the last digit before the e
        while at != -1:
            start = max(text.rfind(b":", 0, at), text.rfind(b",", 0, at), text.rfind(b"[", 0, at))
            number = LONG_EXPONENT.match(text, start) if start >= 0 else None
            if number is not None and number.start(1) == at + 2:
                yield number[1]
            at = shapes.find(shape, at + 1)


def nests_within(text: bytes, levels: int) -> bool:
    """Whether the JSON ``text`` surely nests at most ``levels`` arrays and objects deep (False: unsure).

    Of the text only its brackets are kept. Each pass removes the empty ``[]``, then the empty
    ``{}``, of what is left: at least the innermost level, at most two. Emptied within
    ``levels // 2`` passes, it nests at most ``levels`` deep. Brackets inside strings, or a depth
    past half of ``levels``, may leave it unsure. ``bytes.replace`` makes it three times as fast
    as a regular expression removing one level a pass.
    """
    brackets = text.translate(None, NOT_BRACKETS)
    for _ in range(levels // 2):
        if not brackets:
            return True
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    return not brackets


def filters_of(described: Mapping[str, Any]) -> Filters:
    """The filters a dump import keeps (``DumpImport.filters``), with the ids of its ``--ids`` file read.

    Raises:
        ChunkUnreadable: the ids file is missing here, or changed since the import began.
    """
    ids = None
    if described.get("ids_file"):
        ids = _ids_in(described["ids_file"], tuple(described["ids_signature"]))
    return Filters(
        types=frozenset(described.get("types", ())),
        where={prop: frozenset(values) for prop, values in described.get("where", {}).items()},
        ids=ids,
    )


def file_signature(path: str) -> tuple[int, int]:
    """The size and modification time of ``path``: a file rewritten in place is told apart."""
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _ids_in(path: str, signature: tuple[int, ...]) -> frozenset[str]:
    """The valid ids of an ids file, kept per process for the chunks that follow (keyed by its signature)."""
    try:
        if file_signature(path) != signature:
            raise ChunkUnreadable(f"the --ids file {path} changed since the import began")
        with Path(path).open("rb") as file:
            return frozenset(_valid(read_ids(file)))
    except FileNotFoundError:
        raise ChunkUnreadable(f"the --ids file {path} does not exist on this worker") from None


def _valid(sourced: Iterable[SourcedId]) -> Iterator[str]:
    for item in sourced:
        try:
            yield item.normalized()
        except InvalidEntityId:
            continue  # the command refused the file if any was invalid
