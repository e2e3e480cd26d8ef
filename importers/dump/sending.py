"""A dump read once and cut into chunks (or a gzip sliced), each kept as a ``DumpChunk`` and sent
as a task; on a resume, the chunks done already are skipped and a changed dump is refused."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.management.base import CommandError

from core.exceptions import EnqueueFailed

from ..models import ChunkStatus, DumpChunk, DumpImport
from .files import DumpUnreadable, Span, cut, open_dump
from .importer import WikidataDumpImporter
from .progress import DumpProgress
from .slices import plan_slices
from .sources import RemoteUnusable, is_gzip, open_source


class ChunkSender:
    """Sends a task for each chunk of a dump import not done yet, as the dump is read."""

    def __init__(self, dump: DumpImport, recut: int | None, shown: DumpProgress, verbosity: int) -> None:
        """``recut``: the number of the chunk to cut anew (see ``importers.dump.resuming.start``)."""
        self.dump = dump
        self.recut = recut
        self.shown = shown
        self.verbosity = verbosity
        self.importer = WikidataDumpImporter()
        self.done = set(dump.chunk_set.filter(status=ChunkStatus.DONE).values_list("number", flat=True))
        if recut is not None:
            self.done.discard(recut)
        # The chunk files being written: each chunk's open file, and the name it is given once complete.
        self.sinks: dict[int, tuple[IO[bytes], Path]] = {}

    def send_all(self) -> None:
        """Read the dump once, slicing or cutting it into chunks; send a task for each chunk not done yet.

        A compressed dump's chunks are written to files (each complete before its task is sent),
        no more than ``WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS`` ahead of the workers.

        Raises:
            CommandError: the broker could not be reached, a chunk file could not be written, or the
                dump differs from the one resumed.
        """
        if not self.slice_and_send():
            self.cut_and_send()

    def slice_and_send(self) -> bool:
        """Slice a dump gzipped as Wikimedia gzips it, and send a task per slice; False: it is not.

        The command reads a fraction of the file (``importers.dump.slices``), decompresses none
        of it and writes no chunk file.
        """
        dump = self.dump
        if not is_gzip(dump.path):
            return False
        try:
            with open_source(dump.path, dump.size, dump.mtime_ns) as file:
                slices = plan_slices(file, dump.size, settings.WIKIDATA_DUMP_SLICE_BYTES)
        except RemoteUnusable as error:
            raise CommandError(
                f"{error}; run the same command again to resume dump import {dump.pk}."
            ) from None
        if slices is None:
            return False
        for piece in slices:
            span = Span(piece.number, first_line=1, lines=0, bytes=piece.end - piece.start, start=piece.start)
            chunk = self.record_chunk(span, dump.path)
            if chunk is not None:
                self.send(chunk)
            self.shown.read(piece.end)
        self.finish(len(slices), "")
        return True

    def cut_and_send(self) -> None:
        """Cut the dump into chunks of lines, and send a task for each not done yet."""
        dump = self.dump
        count, error = 0, ""
        with open_dump(Path(dump.path)) as (stream, position):
            try:
                for span in cut(
                    stream, dump.chunk_bytes, self.sink_for, settings.WIKIDATA_DUMP_MAX_LINE_BYTES
                ):
                    count += 1
                    file = self.close_sink(self.sinks.pop(span.number, None)) or dump.path
                    chunk = self.record_chunk(span, file)
                    if chunk is not None:
                        self.send(chunk)
                    elif file != dump.path:  # a chunk cut anew, done already (see record_chunk)
                        os.remove(file)
                    self.shown.read(position())
            except DumpUnreadable as unreadable:
                error = str(unreadable)
            except OSError as failed:  # reading the dump is DumpUnreadable: this is a chunk file
                raise CommandError(
                    f"Cannot write chunk files to {dump.chunk_dir}: {failed.strerror or failed}. Free some "
                    f"space (or give --chunk-dir), then run the same command again to resume dump "
                    f"import {dump.pk}."
                ) from None
            finally:
                for handle, _ in self.sinks.values():
                    handle.close()
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(handle.name)  # a chunk file not finished: its chunk is cut again
        self.finish(count, error)
        if error and self.verbosity >= 1:
            self.shown.say(f"{dump.path}: {error}")

    def finish(self, chunks: int, error: str) -> None:
        """Keep how many chunks the dump has, and why its read failed ("" when it did not)."""
        self.shown.read(self.dump.size)
        DumpImport.objects.filter(pk=self.dump.pk).update(chunks=chunks, split_error=error)
        self.dump.chunks, self.dump.split_error = chunks, error

    def sink_for(self, number: int) -> IO[bytes] | None:
        """The file to write chunk ``number`` to; None for a plain dump's chunk, or one done already."""
        dump = self.dump
        if dump.chunk_dir == "":
            return None
        if number in self.done:
            return None  # resumed: not written again
        self.shown.wait_for_spool(number)
        # A name nobody can foresee, made by this command alone (O_EXCL: never an existing
        # file, nor a symlink planted in a shared directory), and so this import's alone even
        # where two deployments share the directory. Written under another name, then
        # renamed (which replaces a planted symlink, never follows it): a worker still reading
        # the file of an earlier run of this chunk keeps reading that one.
        name = f"{dump.pk}-{number:07d}-{secrets.token_hex(8)}"
        final = Path(dump.chunk_dir) / f"{name}.json"
        partial = Path(dump.chunk_dir) / f"{name}.part"
        self.sinks[number] = (open(partial, "xb", opener=_no_follow), final)  # noqa: SIM115 (closed later)
        return self.sinks[number][0]

    def close_sink(self, sink: tuple[IO[bytes], Path] | None) -> str | None:
        if sink is None:
            return None
        handle, final = sink
        handle.close()
        os.replace(handle.name, final)
        return str(final)

    def record_chunk(self, span: Span, file: str) -> DumpChunk | None:
        """Keep a chunk as cut, to be imported; return it, or None when it is done already.

        A chunk done already (in an earlier run, or by another command resuming the same import
        at once) is left as it is, with its counts. Except the last chunk of an earlier read that
        failed (a truncated or corrupt dump): how far such a dump decompresses may vary (lbzip2
        decompresses blocks in parallel), so that chunk is cut anew, and imported again when it
        now holds more lines; its counts are replaced, not added to.

        Raises:
            CommandError: a chunk of the resumed import was cut differently: the dump changed.
        """
        dump = self.dump
        values = {
            "first_line": span.first_line,
            "lines": span.lines,
            "bytes": span.bytes,
            "file": file,
            "start": span.start if file == dump.path else 0,
            "status": ChunkStatus.PENDING,
            "error": "",
        }
        chunk, created = DumpChunk.objects.get_or_create(dump=dump, number=span.number, defaults=values)
        if created:
            return chunk
        if chunk.is_slice:
            if (chunk.start, chunk.bytes) != (span.start, span.bytes):
                raise CommandError(
                    f"Slice {span.number} of dump import {dump.pk} was bytes {chunk.start} to "
                    f"{chunk.start + chunk.bytes}, now {span.start} to {span.start + span.bytes}: the "
                    "dump changed. Move it to another path to import it anew."
                )
        elif span.number == self.recut and chunk.first_line == span.first_line:
            if chunk.status == ChunkStatus.DONE and span.lines <= chunk.lines:
                return None  # its lines are imported
            DumpChunk.objects.filter(pk=chunk.pk).update(**values)
            return chunk
        # The lines tell a chunk; its bytes differ when an overlong line was cut short in its file.
        elif (chunk.first_line, chunk.lines) != (span.first_line, span.lines):
            raise CommandError(
                f"Chunk {span.number} of dump import {dump.pk} was lines {chunk.first_line} to "
                f"{chunk.first_line + chunk.lines - 1}, now {span.first_line} to "
                f"{span.first_line + span.lines - 1}: the dump changed. Move it to another path to "
                "import it anew."
            )
        if not DumpChunk.objects.filter(pk=chunk.pk).exclude(status=ChunkStatus.DONE).update(**values):
            return None
        return chunk

    def send(self, chunk: DumpChunk) -> None:
        try:
            self.importer.import_chunk.as_task(chunk_id=chunk.pk)
        except EnqueueFailed as error:
            raise CommandError(
                f"The broker could not be reached: {error.__cause__}\nChunks before chunk {chunk.number} "
                f"were sent; run the same command again to resume dump import {chunk.dump_id}."
            ) from None


def _no_follow(path: str, flags: int) -> int:
    """``open``'s opener: never through a symlink, readable by workers running as other users."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)
