"""Slices of a dump gzipped as Wikimedia gzips it: byte ranges of the file that each worker inflates alone.

Wikimedia's dump job gzips each batch of pages on its own and concatenates the pieces
(operations-puppet, ``modules/snapshot/files/cron/wikibase/dumpwikibasejson.sh``): the
``latest-all.json.gz`` file is ``[`` and its line end alone in a first gzip member, then members
of some 65,000 whole lines each (about 70 MB), then ``]``. A gzip member can be inflated from
its first byte with nothing before it, so such a file is cut where members start, with no pass
over it: the command finds a member start near each multiple of ``WIKIDATA_DUMP_SLICE_BYTES``, and
each worker inflates its own range. Every byte is in exactly one slice.

A member start is found by looking for a gzip header (RFC 1952: ``1f 8b 08``) and proving it:
inflated from there, the first bytes must be the start of an entity line (``{``) or the closing
``]``. Three bytes can occur inside compressed data by chance; inflating a few KB into the start
of a JSON line by chance does not happen.

A gzip file of one member (another tool's), or of members that do not start on lines (bgzip),
has no first member holding ``[`` alone: it is not sliced, and the command cuts it into chunk
files as before.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import IO

__all__ = ("Slice", "SliceUnreadable", "first_slice_end", "inflated", "plan_slices")

GZIP_HEADER = b"\x1f\x8b\x08"  # RFC 1952: the magic bytes, then "deflate"
GZIP = 16 + zlib.MAX_WBITS  # zlib's wbits for a gzip member, header and trailer checked
# A member start is looked for this far past each nominal offset, in pieces of SCAN_PIECE; a
# Wikimedia member is about 70 MB, so one is found well within.
SCAN_PIECE = 1 << 20
MAX_SCAN = 1 << 30
# How much is inflated to prove a member start, and from how many compressed bytes.
PROOF_OUTPUT = 64
PROOF_INPUT = 1 << 16
# The decompressed bytes made of each read, at most: a gzip bomb fills no memory.
PIECE = 1 << 20


class SliceUnreadable(Exception):
    """A slice's bytes are not whole gzip members: the file is truncated, changed, or was never so cut."""


@dataclass(frozen=True)
class Slice:
    """Bytes ``start`` to ``end`` (exclusive) of the file: whole gzip members, starting on a line."""

    number: int
    start: int
    end: int


def plan_slices(file: IO[bytes], size: int, slice_bytes: int) -> list[Slice] | None:
    """Slices of about ``slice_bytes`` of a gzip file of ``size`` bytes; None: not gzipped as Wikimedia does.

    Reads the first member and, near each multiple of ``slice_bytes``, up to the next member
    start: a fraction of the file.
    """
    nominal = first_slice_end(file)  # the second member: the first entities
    if nominal is None:
        return None
    starts = [0]
    while True:
        nominal = max(nominal, starts[-1] + slice_bytes)
        if nominal >= size:
            break
        found = _next_member(file, nominal, size)
        if found is None:
            break
        starts.append(found)
        nominal = found + 1
    ends = [*starts[1:], size]
    return [Slice(number, start, end) for number, (start, end) in enumerate(zip(starts, ends, strict=True))]


def first_slice_end(file: IO[bytes]) -> int | None:
    """Where the second gzip member starts, if the first holds ``[`` alone, as Wikimedia's; else None."""
    file.seek(0)
    head = file.read(PROOF_INPUT)
    inflater = zlib.decompressobj(GZIP)
    try:
        first = inflater.decompress(head, PROOF_OUTPUT)
    except zlib.error:
        return None
    if not inflater.eof or first.strip() != b"[":
        return None  # one member, or members not as Wikimedia writes them
    return len(head) - len(inflater.unused_data)


def _next_member(file: IO[bytes], offset: int, size: int) -> int | None:
    """The first proven member start at ``offset`` or after it (within ``MAX_SCAN`` bytes), or None."""
    position = offset
    carry = b""
    while position < min(size, offset + MAX_SCAN):
        file.seek(position)
        piece = carry + file.read(SCAN_PIECE)
        if len(piece) <= len(carry):
            return None
        base = position - len(carry)
        found = piece.find(GZIP_HEADER)
        while found != -1:
            if _member_starts_at(file, base + found):
                return base + found
            found = piece.find(GZIP_HEADER, found + 1)
        position = base + len(piece)
        carry = piece[-(len(GZIP_HEADER) - 1) :]
    return None


def _member_starts_at(file: IO[bytes], offset: int) -> bool:
    file.seek(offset)
    inflater = zlib.decompressobj(GZIP)
    try:
        start = inflater.decompress(file.read(PROOF_INPUT), PROOF_OUTPUT)
    except zlib.error:
        return False
    return start[:1] in (b"{", b"]")


class _Members(io.RawIOBase):
    """The inflated bytes of the whole gzip members in ``file[start:end]``, read in bounded pieces."""

    def __init__(self, file: IO[bytes], start: int, end: int) -> None:
        self.file, self.position, self.end = file, start, end
        self.file.seek(start)
        self.inflater = zlib.decompressobj(GZIP)
        self.fed = False  # whether the current member has had any input
        self.pending = b""  # compressed bytes read and not yet inflated
        self.out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.out:
            if not self.pending:
                if self.position >= self.end:
                    if self.fed:
                        raise SliceUnreadable(
                            f"the gzip member before byte {self.end} does not end there: the file is "
                            "truncated or changed"
                        )
                    return 0
                self.pending = self.file.read(min(PIECE, self.end - self.position))
                if not self.pending:
                    raise SliceUnreadable(
                        f"the file ends at byte {self.position}, before the slice's end ({self.end})"
                    )
                self.position += len(self.pending)
            try:
                self.out = self.inflater.decompress(self.pending, PIECE)
            except zlib.error as error:
                raise SliceUnreadable(
                    f"a gzip member before byte {self.position} is corrupt: {error}"
                ) from None
            self.fed = True
            if self.inflater.eof:
                self.pending = self.inflater.unused_data
                self.inflater, self.fed = zlib.decompressobj(GZIP), False
            else:
                self.pending = self.inflater.unconsumed_tail
        size = min(len(buffer), len(self.out))
        buffer[:size] = self.out[:size]
        self.out = self.out[size:]
        return size


def inflated(file: IO[bytes], start: int, end: int) -> IO[bytes]:
    """The decompressed bytes of slice ``file[start:end]``, to be read with ``readline``.

    Reading raises SliceUnreadable where the bytes are not whole gzip members.
    """
    return io.BufferedReader(_Members(file, start, end), PIECE)
