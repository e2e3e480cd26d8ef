"""``import_wikidata_dump``: import a Wikidata JSON dump, cut into chunks that Celery workers import."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

from core.sender import in_process, runs_in_process
from importers.console import add_waiting_arguments, database_problem, progress_bar
from importers.dump import resuming, summary
from importers.dump.chunks import file_signature
from importers.dump.files import NotADump, check_dump, is_compressed
from importers.dump.lines import Filters
from importers.dump.locks import DumpBusy, reading_alone
from importers.dump.progress import DumpProgress, totals_of
from importers.dump.sending import ChunkSender
from importers.dump.slices import first_slice_end
from importers.dump.sources import RemoteUnusable, is_gzip, is_url, open_source, shown, signature_of
from importers.dump.summary import MAX_LISTED
from importers.entity_ids import ENTITY_ID, ENTITY_NUMBER, InvalidEntityId, read_ids
from importers.models import DumpImport

TYPES = ("item", "property", "lexeme")
WHERE = re.compile(rf"([Pp]{ENTITY_NUMBER})=(.+)")


class Command(BaseCommand):
    help = "Import a Wikidata JSON dump (.json.gz, .json.bz2 or .json), one Celery task per chunk of it."
    verbosity = 1

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
        add_waiting_arguments(parser, until="every chunk is done")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        path = self.checked_path(options["path"])
        filters = self.filters(options["types"], options["where"], options["ids"])
        chunk_dir = self.chunk_dir(path, options["chunk_dir"])
        started = time.monotonic()
        with ExitStack() as stack:
            if options["sync"]:
                stack.enter_context(in_process())
            here = runs_in_process()
            self.hold(stack, path)
            dump, recut = resuming.start(path, filters, chunk_dir, self.say)
            # The bar is for people: shown on a terminal, or when asked to wait.
            shown = self.verbosity >= 1 and (options["wait"] or self.stderr.isatty())
            with self.progress(dump, shown, options["timeout"]) as progress:
                ChunkSender(dump, recut, progress, self.verbosity).send_all()
                if not here and not options["wait"]:
                    self.report_sent(dump)
                    return
                progress.wait_for_chunks()
        self.summarize(dump, time.monotonic() - started)

    def say(self, text: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(text)

    @contextlib.contextmanager
    def progress(self, dump: DumpImport, shown: bool, timeout: float | None) -> Iterator[DumpProgress]:
        columns = (
            TextColumn("{task.description:9}"),
            BarColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        )
        with progress_bar(self.stderr, *columns, shown=shown) as bar:
            yield DumpProgress(dump, bar, timeout)

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

    # Progress, waiting and the summary.

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
        totals = totals_of(dump)
        if self.verbosity >= 1:
            self.stdout.write(summary.counts(dump, totals, seconds))
            if totals.bad:
                self.stderr.write(summary.bad_lines(dump, totals.bad))
        problems = summary.problems(dump, totals)
        if problems:
            raise CommandError(
                "Not every chunk was imported; run the same command again to resume:\n  "
                + "\n  ".join(problems)
            )
        if self.verbosity >= 1:
            self.stdout.write(self.style.SUCCESS("Every chunk was imported."))
