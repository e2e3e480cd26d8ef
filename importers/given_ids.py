"""The ids a command is given: as arguments, or in a file (``-``: standard input), every one checked
before any is sent."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from django.core.management.base import CommandError, CommandParser

from .entity_ids import InvalidEntityId, SourcedId, read_ids
from .runs import MAX_LISTED


def add_id_arguments(parser: CommandParser) -> None:
    """Add the ids (``ID ...``), ``--file`` and ``--skip-invalid``."""
    parser.add_argument("ids", nargs="*", metavar="ID", help="Entity ids: Q1022, P31, L7, ...")
    parser.add_argument("--file", metavar="PATH", help="Read ids from a file, one a line ('-' for stdin).")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="Import the valid ids even when some are invalid."
    )


class GivenIds:
    """The ids given as arguments, or the path of a file to stream them from."""

    def __init__(self, ids: list[str], path: str | None, stack: ExitStack) -> None:
        """Standard input is copied to a file closed with ``stack``.

        Raises:
            CommandError: ids as arguments and a file, neither, or no such file.
        """
        self.source = self._open(ids, path, stack)
        self.valid = 0  # how many, once checked
        self.id_width = 0  # of the longest valid one, once checked

    @staticmethod
    def _open(ids: list[str], path: str | None, stack: ExitStack) -> list[SourcedId] | Path:
        if ids and path:
            raise CommandError("Give ids as arguments or with --file, not both.")
        if not path:
            if not ids:
                raise CommandError("Give at least one id, e.g. `import_wikidata Q1022`, or --file PATH.")
            return [SourcedId(raw, f"argument {number}") for number, raw in enumerate(ids, start=1)]
        if path == "-":
            # Standard input can be read only once; the ids are checked before any is sent. Its
            # bytes are copied as they are: read_ids decodes them, line by line.
            spool = stack.enter_context(tempfile.NamedTemporaryFile("w+b", suffix=".ids"))  # noqa: SIM115
            stdin = getattr(sys.stdin, "buffer", None)
            if stdin is not None:
                shutil.copyfileobj(stdin, spool)
            else:  # a text stream without bytes beneath, as tests put in its place
                for text in iter(lambda: sys.stdin.read(1 << 16), ""):
                    spool.write(text.encode("utf-8", "surrogateescape"))
            spool.flush()
            return Path(spool.name)
        if not Path(path).is_file():
            raise CommandError(f"--file {path}: no such file.")
        return Path(path)

    def sourced(self) -> Iterator[SourcedId]:
        if isinstance(self.source, list):
            yield from self.source
            return
        with self.source.open("rb") as file:
            yield from read_ids(file)

    def check(self, skip_invalid: bool, warn: Callable[[str], None]) -> None:
        """Check every id, keeping how many are valid; ``warn`` is told which are skipped.

        Raises:
            CommandError: an id is invalid (and not ``skip_invalid``), or there is no valid id.
        """
        valid = invalid = 0
        listed: list[str] = []  # the first MAX_LISTED invalid ones, with where they are
        for sourced in self.sourced():
            try:
                self.id_width = max(self.id_width, len(sourced.normalized()))
                valid += 1
            except InvalidEntityId as error:
                invalid += 1
                # A junk file has millions of invalid lines: the first few say what is wrong.
                if len(listed) < MAX_LISTED:
                    listed.append(f"  {sourced.origin}: {error}")
        self.valid = valid
        if invalid:
            if invalid > len(listed):
                listed.append(f"  ... and {invalid - len(listed)} more")
            listing = "\n".join(listed)
            noun = "id" if invalid == 1 else "ids"
            if not skip_invalid:
                raise CommandError(
                    f"{invalid} invalid {noun}; nothing was imported "
                    f"(--skip-invalid imports the rest):\n{listing}"
                )
            warn(f"Skipping {invalid} invalid {noun}:\n{listing}")
        if not valid:
            raise CommandError("No valid ids to import.")

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Yield each valid id, normalized, with where it came from."""
        for sourced in self.sourced():
            try:
                yield sourced.normalized(), sourced.origin
            except InvalidEntityId:
                continue  # listed by check already
