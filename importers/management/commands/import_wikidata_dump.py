"""``import_wikidata_dump``: import a Wikidata JSON dump, cut into chunks that Celery workers import."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.db.models import Count, Q, Sum
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from core.database import UNAVAILABLE, patiently
from core.exceptions import EnqueueFailed
from core.sender import in_process, runs_in_process
from importers.console import NO_WORKER_HINT_AFTER, consumers_of, database_problem, progress_bar, seconds
from importers.dump.chunks import file_signature
from importers.dump.files import DumpUnreadable, NotADump, Span, check_dump, cut, is_compressed, open_dump
from importers.dump.importer import WikidataDumpImporter
from importers.dump.lines import Filters
from importers.dump.locks import DumpBusy, reading_alone
from importers.dump.slices import first_slice_end, plan_slices
from importers.dump.sources import RemoteUnusable, is_gzip, is_url, open_source, shown, signature_of
from importers.entity_ids import ENTITY_ID, ENTITY_NUMBER, InvalidEntityId, read_ids
from importers.models import ChunkStatus, DumpChunk, DumpImport

TYPES = ("item", "property", "lexeme")
WHERE = re.compile(rf"([Pp]{ENTITY_NUMBER})=(.+)")
# Failed chunks and bad lines listed in the summary; the admin and DumpChunk have the rest.
MAX_LISTED = 20
# How often the progress is read from the database.
POLL = 0.5
MIB = 1024 * 1024


@dataclass
class Totals:
    """The counts of a dump import's chunks, summed."""

    chunks: int = 0
    done: int = 0
    failed: int = 0
    entities: int = 0
    matched: int = 0
    written: int = 0
    unchanged: int = 0
    bad: int = 0
    bytes: int = 0


class Command(BaseCommand):
    help = "Import a Wikidata JSON dump (.json.gz, .json.bz2 or .json), one Celery task per chunk of it."
    verbosity = 1

    # The number of the chunk to cut anew: the last one of a resumed import whose read failed.
    recut: int | None = None

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH", help="The dump: .json.gz, .json.bz2 or plain .json.")
        parser.add_argument(
            "--type",
            action="append",
            choices=TYPES,
            dest="types",
            default=[],
            help="Import entities of this type only (repeatable).",
        )
        parser.add_argument(
            "--where",
            action="append",
            default=[],
            metavar="PROPERTY=VALUE",
            help="Import entities with a statement of PROPERTY whose main value is VALUE, e.g. P31=Q515 "
            "(repeatable: any value of one property, every property).",
        )
        parser.add_argument("--ids", metavar="FILE", help="Import the ids listed in FILE (one a line) only.")
        parser.add_argument(
            "--chunk-dir",
            metavar="DIR",
            help="Where to write the chunks of a compressed dump, at a path every worker sees "
            "(default: WIKIDATA_DUMP_CHUNK_DIR, else PATH.chunks beside the dump).",
        )
        parser.add_argument(
            "--wait", action="store_true", help="With a broker: show progress until every chunk is done."
        )
        parser.add_argument(
            "--timeout",
            type=seconds,
            metavar="SECONDS",
            help="With --wait: give up waiting after this long (the workers go on), and exit non-zero.",
        )
        parser.add_argument("--sync", action="store_true", help="Import in this process even with a broker.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        path = self.checked_path(options["path"])
        filters = self.filters(options["types"], options["where"], options["ids"])
        chunk_dir = self.chunk_dir(path, options["chunk_dir"])
        started = time.monotonic()
        deadline = None if options["timeout"] is None else started + options["timeout"]
        with ExitStack() as stack:
            if options["sync"]:
                stack.enter_context(in_process())
            here = runs_in_process()
            self.hold(stack, path)
            dump = self.start(path, filters, chunk_dir)
            # The bar is for people: shown on a terminal, or when asked to wait.
            shown = self.verbosity >= 1 and (options["wait"] or self.stderr.isatty())
            with self.progress(shown) as progress:
                self.cut_and_send(dump, progress, deadline)
                if not here and not options["wait"]:
                    self.report_sent(dump)
                    return
                self.wait_for(dump, progress, deadline)
        self.summarize(dump, time.monotonic() - started)

    # Checking the arguments: nothing is written before they are all checked.

    def checked_path(self, raw: str) -> str:
        """The dump's absolute path, or its URL.

        Raises:
            CommandError: no such file, not a dump, or a URL that cannot be sliced (see ``checked_url``).
        """
        if is_url(raw):
            return self.checked_url(raw)
        path = Path(raw).absolute()
        if not path.exists():
            raise CommandError(f"{raw}: no such file.")
        try:
            check_dump(path)
        except NotADump as error:
            raise CommandError(f"{raw} is not a Wikidata JSON dump: {error}.") from None
        return str(path)

    def checked_url(self, url: str) -> str:
        """Check that ``url`` serves ranges of a .gz gzipped as Wikimedia gzips it: the workers slice it.

        Raises:
            CommandError: it cannot be read by ranges, or it is not such a .gz (download it first).
        """
        try:
            size, version = signature_of(url)
            with open_source(url, size, version) as file:
                sliced = is_gzip(url) and first_slice_end(file) is not None
        except RemoteUnusable as error:
            raise CommandError(str(error)) from None
        if not sliced:
            raise CommandError(
                f"{shown(url)} is not a .gz gzipped as Wikimedia gzips its dumps ('[' alone in a first "
                "member): only such a dump is read from a URL; download it and give its path."
            )
        return url

    def filters(self, types: list[str], where: list[str], ids_file: str | None) -> dict[str, Any]:
        """The filters as a dump import keeps them; the ids file is checked whole, in the memory of a line.

        Raises:
            CommandError: a ``--where`` is not PROPERTY=VALUE, or the ids file is missing or has invalid ids.
        """
        conditions: dict[str, set[str]] = {}
        for condition in where:
            found = WHERE.fullmatch(condition.strip())
            if found is None:
                raise CommandError(
                    f"--where {condition[:60]!r}: expected PROPERTY=VALUE, e.g. P31=Q515 (a property id, "
                    "then the value of its statements: an entity id, a string, an amount or a time)."
                )
            value = found.group(2).strip()
            if ENTITY_ID.fullmatch(value.upper()):
                value = value.upper()
            conditions.setdefault(found.group(1).upper(), set()).add(value)
        described: dict[str, Any] = Filters(
            types=frozenset(types), where={prop: frozenset(values) for prop, values in conditions.items()}
        ).describe()
        if ids_file is not None:
            path = Path(ids_file).absolute()
            if not path.is_file():
                raise CommandError(f"--ids {ids_file}: no such file.")
            self.check_ids(path)
            described["ids_file"] = str(path)
            described["ids_signature"] = list(file_signature(str(path)))
        return described

    def check_ids(self, path: Path) -> None:
        invalid, listed = 0, list[str]()
        with path.open("rb") as file:
            for sourced in read_ids(file):
                try:
                    sourced.normalized()
                except InvalidEntityId as error:
                    invalid += 1
                    if len(listed) < MAX_LISTED:
                        listed.append(f"  {sourced.origin}: {error}")
        if invalid:
            more = f"\n  ... and {invalid - len(listed)} more" if invalid > len(listed) else ""
            raise CommandError(
                f"--ids {path}: {invalid} invalid ids; nothing was imported:\n" + "\n".join(listed) + more
            )

    def chunk_dir(self, path: str, given: str | None) -> Path | None:
        """The directory for the chunk files of a compressed dump (made if need be); None for a plain dump.

        Raises:
            CommandError: it cannot be made or written to.
        """
        if is_url(path) or not is_compressed(Path(path)):
            return None
        directory = Path(given or settings.WIKIDATA_DUMP_CHUNK_DIR or f"{path}.chunks").absolute()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise CommandError(
                f"Cannot write chunk files to {directory}: {error.strerror}. Give --chunk-dir DIR (or set "
                "WIKIDATA_DUMP_CHUNK_DIR), a directory every worker sees at the same path."
            ) from None
        return directory

    # The dump import: new, or resumed.

    def start(self, path: str, filters: dict[str, Any], chunk_dir: Path | None) -> DumpImport:
        """Resume the unfinished import of this dump file with these filters, or begin a new one.

        Raises:
            CommandError: the database cannot be used; says why.
        """
        try:
            size, mtime_ns = signature_of(path)
        except RemoteUnusable as error:
            raise CommandError(str(error)) from None
        chunk_bytes = settings.WIKIDATA_DUMP_CHUNK_BYTES
        if chunk_bytes < 1024:
            raise CommandError(f"WIKIDATA_DUMP_CHUNK_BYTES is {chunk_bytes}: it must be at least 1024.")
        try:
            previous = (
                DumpImport.objects.filter(
                    path=str(path), size=size, mtime_ns=mtime_ns, chunk_bytes=chunk_bytes
                )
                .order_by("-pk")
                .first()
            )
            if previous is not None and previous.filters == filters and not self.finished(previous):
                done = previous.chunk_set.filter(status=ChunkStatus.DONE).count()
                if self.verbosity >= 1:
                    self.stdout.write(
                        f"Resuming dump import {previous.pk}: {done} chunks done already are skipped."
                    )
                # The last chunk of a read that failed may have been cut short: it is cut anew.
                self.recut = previous.chunk_set.order_by("-number").values_list("number", flat=True).first()
                if not previous.split_error:
                    self.recut = None
                # The chunk directory given now is where the chunks not done yet are written again.
                previous.split_error, previous.chunk_dir = "", str(chunk_dir or "")
                DumpImport.objects.filter(pk=previous.pk).update(split_error="", chunk_dir=previous.chunk_dir)
                return previous
            return DumpImport.objects.create(
                path=str(path),
                size=size,
                mtime_ns=mtime_ns,
                filters=filters,
                chunk_bytes=chunk_bytes,
                chunk_dir=str(chunk_dir or ""),
            )
        except DatabaseError as error:
            raise CommandError(database_problem(error)) from None

    def hold(self, stack: ExitStack, path: str) -> None:
        """Hold the dump's lock until the command ends (``importers.dump.locks``).

        Raises:
            CommandError: another command is importing this dump now.
        """
        try:
            stack.enter_context(reading_alone(path))
        except DumpBusy:
            raise CommandError(
                f"Another import_wikidata_dump is importing {shown(path)} now: nothing was done. Run this "
                "command again once it has ended, to resume whatever it leaves."
            ) from None
        except DatabaseError as error:
            raise CommandError(database_problem(error)) from None

    def finished(self, dump: DumpImport) -> bool:
        if dump.chunks is None or dump.split_error:
            return False
        return not dump.chunk_set.exclude(status=ChunkStatus.DONE).exists()

    # Cutting the dump, and sending a task per chunk.

    def cut_and_send(self, dump: DumpImport, progress: Progress, deadline: float | None) -> None:
        """Read the dump once, cutting it into chunks; send a task for each chunk not done yet.

        A compressed dump's chunks are written to files (each complete before its task is sent),
        no more than ``WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS`` ahead of the workers.

        Raises:
            CommandError: the broker could not be reached, or the dump differs from the one resumed.
        """
        path = Path(dump.path)
        done = set(dump.chunk_set.filter(status=ChunkStatus.DONE).values_list("number", flat=True))
        if self.recut is not None:
            done.discard(self.recut)
        importer = WikidataDumpImporter()
        sinks: dict[int, tuple[IO[bytes], Path]] = {}
        reading = progress.add_task("reading", total=dump.size, rate="")
        self.importing = progress.add_task("importing", total=None, rate="")
        self.started = time.monotonic()
        last_poll = 0.0
        count = 0

        def sink_for(number: int) -> IO[bytes] | None:
            if dump.chunk_dir == "":
                return None
            if number in done:
                return None  # resumed: not written again
            self.wait_for_spool(dump, number, progress, deadline)
            # A name nobody can foresee, made by this command alone (O_EXCL: never an existing
            # file, nor a symlink planted in a shared directory), and so this import's alone even
            # where two deployments share the directory. Written under another name, then
            # renamed (which replaces a planted symlink, never follows it): a worker still reading
            # the file of an earlier run of this chunk keeps reading that one.
            name = f"{dump.pk}-{number:07d}-{secrets.token_hex(8)}"
            final = Path(dump.chunk_dir) / f"{name}.json"
            partial = Path(dump.chunk_dir) / f"{name}.part"
            sinks[number] = (open(partial, "xb", opener=_no_follow), final)  # noqa: SIM115 (closed later)
            return sinks[number][0]

        if self.slice_and_send(dump, importer, progress, reading):
            return
        error = ""
        with open_dump(path) as (stream, position):
            try:
                for span in cut(stream, dump.chunk_bytes, sink_for, settings.WIKIDATA_DUMP_MAX_LINE_BYTES):
                    count += 1
                    file = self.close_sink(sinks.pop(span.number, None)) or dump.path
                    chunk = self.record_chunk(dump, span, file)
                    if chunk is not None:
                        self.send(importer, chunk)
                    elif file != dump.path:  # a chunk cut anew, done already (see record_chunk)
                        os.remove(file)
                    progress.update(reading, completed=position())
                    if time.monotonic() - last_poll >= POLL:
                        last_poll = time.monotonic()
                        self.show(dump, progress, None)
            except DumpUnreadable as unreadable:
                error = str(unreadable)
            except OSError as failed:  # reading the dump is DumpUnreadable: this is a chunk file
                raise CommandError(
                    f"Cannot write chunk files to {dump.chunk_dir}: {failed.strerror or failed}. Free some "
                    f"space (or give --chunk-dir), then run the same command again to resume dump "
                    f"import {dump.pk}."
                ) from None
            finally:
                for handle, _ in sinks.values():
                    handle.close()
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(handle.name)  # a chunk file not finished: its chunk is cut again
        progress.update(reading, completed=dump.size)
        DumpImport.objects.filter(pk=dump.pk).update(chunks=count, split_error=error)
        dump.chunks, dump.split_error = count, error
        if error and self.verbosity >= 1:
            progress.console.print(f"{dump.path}: {error}", markup=False)

    def slice_and_send(
        self, dump: DumpImport, importer: WikidataDumpImporter, progress: Progress, reading: TaskID
    ) -> bool:
        """Slice a dump gzipped as Wikimedia gzips it, and send a task per slice; False: it is not.

        The command reads a fraction of the file (``importers.dump.slices``), decompresses none
        of it and writes no chunk file.
        """
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
            chunk = self.record_chunk(dump, span, dump.path)
            if chunk is not None:
                self.send(importer, chunk)
            progress.update(reading, completed=piece.end)
        DumpImport.objects.filter(pk=dump.pk).update(chunks=len(slices), split_error="")
        dump.chunks, dump.split_error = len(slices), ""
        return True

    def close_sink(self, sink: tuple[IO[bytes], Path] | None) -> str | None:
        if sink is None:
            return None
        handle, final = sink
        handle.close()
        os.replace(handle.name, final)
        return str(final)

    def record_chunk(self, dump: DumpImport, span: Span, file: str) -> DumpChunk | None:
        """Keep a chunk as cut, to be imported; return it, or None when it is done already.

        A chunk done already (in an earlier run, or by another command resuming the same import
        at once) is left as it is, with its counts. Except the last chunk of an earlier read that
        failed (a truncated or corrupt dump): how far such a dump decompresses may vary (lbzip2
        decompresses blocks in parallel), so that chunk is cut anew, and imported again when it
        now holds more lines; its counts are replaced, not added to.

        Raises:
            CommandError: a chunk of the resumed import was cut differently: the dump changed.
        """
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

    def send(self, importer: WikidataDumpImporter, chunk: DumpChunk) -> None:
        try:
            importer.import_chunk.as_task(chunk_id=chunk.pk)
        except EnqueueFailed as error:
            raise CommandError(
                f"The broker could not be reached: {error.__cause__}\nChunks before chunk {chunk.number} "
                f"were sent; run the same command again to resume dump import {chunk.dump_id}."
            ) from None

    def wait_for_spool(
        self, dump: DumpImport, number: int, progress: Progress, deadline: float | None
    ) -> None:
        """Pause while ``WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS`` chunk files wait for a worker."""
        limit = settings.WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS
        hinted = False
        waited = time.monotonic()
        spooled = (
            dump.chunk_set.filter(number__lt=number).exclude(status=ChunkStatus.DONE).exclude(file=dump.path)
        )
        while spooled.count() >= limit:
            # A failed chunk keeps its file, for a later run to resume, and no worker will take
            # it: waiting for it would be waiting for ever, saying nothing.
            failed = spooled.filter(status=ChunkStatus.FAILED).order_by("number").first()
            if failed is not None:
                raise CommandError(
                    f"Stopped cutting dump import {dump.pk}: {limit} chunk files wait "
                    f"(WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS) and chunk {failed.number} failed: {failed.error}\n"
                    "Fix that, then run the same command again to resume the import."
                )
            self.check_deadline(dump, deadline)
            hinted = self.hint(progress, waited, hinted)
            self.show(dump, progress, None)
            time.sleep(POLL)

    # Progress, waiting and the summary.

    @contextlib.contextmanager
    def progress(self, shown: bool) -> Iterator[Progress]:
        columns = (
            TextColumn("{task.description:9}"),
            BarColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        )
        with progress_bar(self.stderr, *columns, shown=shown) as progress:
            yield progress

    def totals(self, dump: DumpImport) -> Totals:
        def counted() -> dict[str, Any]:
            return dump.chunk_set.aggregate(
                chunks=Count("pk"),
                done=Count("pk", filter=Q(status=ChunkStatus.DONE)),
                failed=Count("pk", filter=Q(status=ChunkStatus.FAILED)),
                entities=Sum("entities"),
                matched=Sum("matched"),
                written=Sum("written"),
                unchanged=Sum("unchanged"),
                bad=Sum("bad"),
                bytes=Sum("bytes", filter=Q(status=ChunkStatus.DONE)),
            )

        try:
            figures = patiently(counted)
        except UNAVAILABLE as error:
            raise CommandError(f"Lost the database while importing dump {dump.pk}: {error}") from None
        return Totals(**{name: value or 0 for name, value in figures.items()})

    def show(self, dump: DumpImport, progress: Progress, totals: Totals | None) -> Totals:
        totals = totals or self.totals(dump)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (
            f"{totals.done}/{dump.chunks if dump.chunks is not None else '?'} chunks  "
            f"{totals.entities / elapsed:,.0f} entities/s  {totals.bytes / MIB / elapsed:,.1f} MB/s"
        )
        progress.update(self.importing, total=dump.chunks, completed=totals.done + totals.failed, rate=rate)
        return totals

    def hint(self, progress: Progress, since: float, hinted: bool) -> bool:
        if hinted or time.monotonic() - since < NO_WORKER_HINT_AFTER or runs_in_process():
            return hinted
        # Celery's own value: the settings users run name no CELERY_TASK_DEFAULT_QUEUE (only the tests' do).
        queue = WikidataDumpImporter.queue or current_app.conf.task_default_queue
        if not consumers_of(queue):
            progress.console.print(
                f"No worker consumes the '{queue}' queue: start one, e.g. the Procfile's "
                f"`celery -A config.celery_app worker --queues {queue}`.",
                markup=False,
            )
        return True

    def check_deadline(self, dump: DumpImport, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            totals = self.totals(dump)
            left = (dump.chunks if dump.chunks is not None else totals.chunks) - totals.done - totals.failed
            unread = "" if dump.chunks is not None else ", and the dump is not read to its end"
            raise CommandError(
                f"Gave up waiting: {left} chunks of dump import {dump.pk} are not finished{unread} (the "
                "workers go on; run the same command again to resume it)."
            )

    def wait_for(self, dump: DumpImport, progress: Progress, deadline: float | None) -> None:
        """Show the progress until every chunk is done or failed.

        Raises:
            CommandError: the deadline passed first, or the database stayed unavailable.
        """
        hinted, since, last_done = False, time.monotonic(), -1
        while True:
            totals = self.show(dump, progress, None)
            if totals.done + totals.failed >= (dump.chunks or 0):
                return
            if totals.done != last_done:
                since, last_done = time.monotonic(), totals.done
            hinted = self.hint(progress, since, hinted)
            self.check_deadline(dump, deadline)
            time.sleep(POLL)

    def report_sent(self, dump: DumpImport) -> None:
        if self.verbosity >= 1:
            self.stdout.write(
                f"Cut {dump.path} into {dump.chunks} chunks and sent a task for each not done (dump import "
                f"{dump.pk}); run the same command with --wait to follow it."
            )
        if dump.split_error:
            raise CommandError(f"{dump.path}: {dump.split_error}")

    def summarize(self, dump: DumpImport, seconds: float) -> None:
        """Print the counts; fail, naming the failed chunks, unless every chunk was imported.

        Raises:
            CommandError: a chunk failed, or the dump could not be read to its end.
        """
        totals = self.totals(dump)
        if self.verbosity >= 1:
            self.stdout.write(
                f"Dump import {dump.pk}: {totals.done} of {dump.chunks} chunks done; {totals.entities:,} "
                f"entities read, {totals.matched:,} matched, {totals.written:,} written, "
                f"{totals.unchanged:,} unchanged, "
                f"{totals.bad:,} bad lines; {seconds:.1f} s, {totals.entities / max(seconds, 1e-9):,.0f} "
                f"entities/s, {totals.bytes / MIB / max(seconds, 1e-9):,.1f} MB/s."
            )
            self.list_bad_lines(dump, totals.bad)
        problems = []
        if dump.split_error:
            problems.append(f"{dump.path}: {dump.split_error}")
        failed = dump.chunk_set.filter(status=ChunkStatus.FAILED).order_by("number")
        for chunk in failed[:MAX_LISTED]:
            problems.append(
                f"chunk {chunk.number} (lines {chunk.first_line} to {chunk.first_line + chunk.lines - 1}) "
                f"failed: {chunk.error}"
            )
        if totals.failed > MAX_LISTED:
            problems.append(f"... and {totals.failed - MAX_LISTED} more failed chunks")
        if problems:
            raise CommandError(
                "Not every chunk was imported; run the same command again to resume:\n  "
                + "\n  ".join(problems)
            )
        if self.verbosity >= 1:
            self.stdout.write(self.style.SUCCESS("Every chunk was imported."))

    def list_bad_lines(self, dump: DumpImport, bad: int) -> None:
        if not bad:
            return
        listed: list[str] = []
        for bad_lines in (
            dump.chunk_set.filter(bad__gt=0).order_by("number").values_list("bad_lines", flat=True)
        ):
            for number, reason in bad_lines:
                if len(listed) < MAX_LISTED:
                    listed.append(f"  line {number}: {reason}")
        more = (
            f"\n  ... and {bad - len(listed):,} more (each chunk's first 100: in the admin's dump chunks)"
            if bad > len(listed)
            else ""
        )
        self.stderr.write(f"{bad:,} bad lines:\n" + "\n".join(listed) + more)


def _no_follow(path: str, flags: int) -> int:
    """``open``'s opener: never through a symlink, readable by workers running as other users."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)
