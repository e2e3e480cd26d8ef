"""Reading a dump file once, whatever its compression, and cutting it into chunks of whole lines.

A compressed dump is decompressed once, by the command, into chunk files that the workers read;
a plain one is cut into byte ranges of itself, read by the workers where it lies.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ("DumpUnreadable", "NotADump", "Span", "check_dump", "cut", "is_compressed", "open_dump")

# Lines are copied in pieces of at most this many bytes: a line of any length takes no more memory.
PIECE = 1 << 20
# The first bytes looked at to tell a dump from another file: few, so that a dump truncated
# further on is still taken for one (and its whole lines imported).
PEEK = 64


class NotADump(Exception):
    """The file is not a Wikidata JSON dump; the message says why."""


class DumpUnreadable(Exception):
    """The dump ended early or is corrupt after ``line`` lines; its whole lines before that were cut."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Span:
    """One chunk as cut: its number, first line, lines, bytes (kept in its file) and offset in the stream."""

    number: int
    first_line: int
    lines: int
    bytes: int
    start: int


def is_compressed(path: Path) -> bool:
    return path.suffix in (".gz", ".bz2")


@contextlib.contextmanager
def open_dump(path: Path) -> Iterator[tuple[IO[bytes], Callable[[], int]]]:
    """Open ``path`` decompressed; yield the stream and a function telling how far into the file it has read.

    ``.gz`` is read with zlib; ``.bz2`` with ``lbzip2`` (parallel) when installed, else Python's
    bz2; anything else as plain JSON.

    Raises:
        DumpUnreadable: (on leaving) ``lbzip2`` failed.
    """
    with path.open("rb") as raw:
        position = _position(raw)
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream, position  # type: ignore[misc]
        elif path.suffix == ".bz2" and shutil.which("lbzip2"):
            # The child reads the same open file: its offset is the progress.
            process = subprocess.Popen(
                ["lbzip2", "-dc"], stdin=raw, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert process.stdout is not None
            assert process.stderr is not None
            try:
                yield process.stdout, position
            finally:
                # Read to its end, lbzip2's status says whether the file was whole. Left earlier
                # (the first bytes were enough), it is stopped: how it ends then says nothing, as
                # a closed pipe (SIGPIPE, or "Broken pipe" and a status of 1) is no failure of it.
                finished = process.stdout.read(1) == b""
                process.stdout.close()
                if not finished:
                    process.kill()
                errors = process.stderr.read(2000).decode(errors="replace")
                process.stderr.close()
                process.wait()
            if finished and process.returncode != 0:
                raise DumpUnreadable(
                    f"lbzip2 failed: {errors.strip() or f'exit status {process.returncode}'}", 0
                )
        elif path.suffix == ".bz2":
            with bz2.BZ2File(raw, "rb") as stream:
                yield stream, position
        else:
            yield raw, position


def _position(raw: IO[bytes]) -> Callable[[], int]:
    descriptor = raw.fileno()
    return lambda: os.lseek(descriptor, 0, os.SEEK_CUR)


def check_dump(path: Path) -> None:
    """Check that ``path`` is a file that opens as a JSON array, as a dump does, without reading it all.

    Raises:
        NotADump: it is not a file, it does not decompress, or it does not start with ``[``.
    """
    if not path.is_file():
        raise NotADump("not a file")
    try:
        with open_dump(path) as (stream, _):
            start = stream.read(PEEK)
    except (OSError, EOFError, zlib.error, DumpUnreadable) as error:
        raise NotADump(f"it does not decompress as {path.suffix}: {error}") from None
    text = start.lstrip()
    if not text.startswith(b"["):
        shown = text[:20].decode(errors="replace")
        raise NotADump(f"it does not start with '[' (a JSON array, one entity a line) but with {shown!r}")
    if text[1:].lstrip(b" \t\r")[:1] not in (b"\n", b""):
        # The dumps write '[' alone on the first line: one array on one line would be read as no entity.
        raise NotADump("its '[' is not alone on the first line (a JSON array, one entity a line)")


def cut(
    stream: IO[bytes],
    chunk_bytes: int,
    sink_for: Callable[[int], IO[bytes] | None],
    max_line_bytes: int | None = None,
) -> Iterator[Span]:
    """Read ``stream`` once and yield its chunks: each ends at the first line end past ``chunk_bytes``.

    Each chunk's bytes go to ``sink_for(number)`` (called as the chunk begins; None: not kept)
    as they are read, in pieces of at most ``PIECE`` bytes. Of a line longer than
    ``max_line_bytes``, only its first pieces and its line end are kept: enough for the worker to
    find it overlong, and a gzip bomb of one endless line fills no disk. ``Span.bytes`` counts
    the bytes kept (the bytes read, without a sink).

    Raises:
        DumpUnreadable: the stream ended early or is corrupt; the chunk read until then was yielded.
    """
    number, first_line, offset = 0, 1, 0
    size = kept = lines = line_bytes = 0
    sink: IO[bytes] | None = None
    ended = True  # whether the last piece read ended a line
    while True:
        try:
            piece = stream.readline(PIECE)
        except (OSError, EOFError, zlib.error) as error:
            if size:
                yield Span(number, first_line, lines + (0 if ended else 1), kept, offset)
            last = first_line + lines - (1 if ended else 0)
            raise DumpUnreadable(
                f"the dump ends early or is corrupt after line {last}: {error}", last
            ) from None
        if not piece:
            break
        if not size:
            sink = sink_for(number)
        ended = piece.endswith(b"\n")
        if max_line_bytes is not None and line_bytes > max_line_bytes and sink is not None:
            kept += sink.write(b"\n") if ended else 0  # the rest of an overlong line: dropped
        else:
            kept += sink.write(piece) if sink is not None else len(piece)
        size += len(piece)
        line_bytes = 0 if ended else line_bytes + len(piece)
        if ended:
            lines += 1
            if size >= chunk_bytes:
                yield Span(number, first_line, lines, kept, offset)
                number, first_line, offset = number + 1, first_line + lines, offset + size
                size = kept = lines = 0
    if size:  # the last chunk, whose last line may have no line end
        yield Span(number, first_line, lines + (0 if ended else 1), kept, offset)
