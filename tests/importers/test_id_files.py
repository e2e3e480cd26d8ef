"""Id files and ids as an operator or a caller may give them: odd bytes, huge lines, junk, read in bounds."""

from __future__ import annotations

import io
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from importers.entity_ids import InvalidEntityId, normalize
from importers.importers import WikidataImporter
from importers.models import ImportOutcome
from tests.conftest import ROOT
from tests.importers.conftest import import_wikidata
from tests.support.wikidata_server import StandInWikidata

pytestmark = pytest.mark.django_db

NOT_AN_ID = "is not a Wikidata id (Q, P or L and a number, e.g. Q1022)"


@pytest.mark.parametrize("source", ["file", "stdin"])
@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfQ1022\nP31\n",
        b"\xef\xbb\xbfQ1022\r\nP31\r\n",
        b"Q1022  # " + b"a comment that goes on " * 500 + b"\nP31\n",
        b"Q1022  # caf\xe9 (Latin-1 in a comment)\nP31\n",
        b"Q1022\nP31",
    ],
    ids=[
        "a byte order mark",
        "a byte order mark and CRLF",
        "a 12 KB comment",
        "Latin-1 in a comment",
        "no line break at the end",
    ],
)
def test_an_id_file_with_odd_bytes_around_its_ids_is_imported(
    served: StandInWikidata,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    content: bytes,
) -> None:
    if source == "stdin":
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(content)))
        output = import_wikidata("--file", "-")
    else:
        ids = tmp_path / "ids.txt"
        ids.write_bytes(content)
        output = import_wikidata("--file", str(ids))
    assert [line.split()[:2] for line in output.splitlines()[:2]] == [
        ["Q1022", "imported"],
        ["P31", "imported"],
    ]


@pytest.mark.parametrize(
    ("line", "listed"),
    [
        (b"Q\xff42", "not UTF-8 text (byte 2 of the line is 0xff)"),
        (b"\xe9t\xe9 # and a comment", "not UTF-8 text (byte 1 of the line is 0xe9)"),
        (b"Q" * 5000, "a line of 5000 bytes, longer than 1024: not an id"),
        (b"Q" + b"1" * 500, f"'Q1111111111111111111'... (501 characters) {NOT_AN_ID}"),
        (b"\xef\xbb\xbfP31", f"'\\ufeffP31' {NOT_AN_ID}"),  # a byte order mark only starts a file
    ],
    ids=["not UTF-8", "not UTF-8 before a comment", "a 5000-byte line", "a 501-character id", "a late BOM"],
)
def test_an_unreadable_or_overlong_line_is_named_by_its_number_and_quoted_at_most_in_part(
    served: StandInWikidata, tmp_path: Path, line: bytes, listed: str
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"Q1022\n" + line + b"\nP31\n")
    with pytest.raises(CommandError) as caught:
        import_wikidata("--file", str(ids))
    assert str(caught.value).splitlines() == [
        "1 invalid id; nothing was imported (--skip-invalid imports the rest):",
        f"  line 2: {listed}",
    ]
    assert served.requests == []


def test_the_first_50_invalid_lines_are_listed_and_the_rest_counted(
    served: StandInWikidata, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("Q1022\n" + "".join(f"nope{number}\n" for number in range(120)))
    with pytest.raises(CommandError) as caught:
        import_wikidata("--file", str(ids))
    lines = str(caught.value).splitlines()
    assert lines[0] == "120 invalid ids; nothing was imported (--skip-invalid imports the rest):"
    assert lines[1] == f"  line 2: 'nope0' {NOT_AN_ID}"
    assert lines[50] == f"  line 51: 'nope49' {NOT_AN_ID}"
    assert lines[51:] == ["  ... and 70 more"]

    err = io.StringIO()
    call_command("import_wikidata", "--file", str(ids), "--skip-invalid", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines()[0] == "Skipping 120 invalid ids:"
    assert err.getvalue().splitlines()[51:] == ["  ... and 70 more"]


def test_an_overlong_id_given_as_an_argument_is_quoted_in_part(served: StandInWikidata) -> None:
    with pytest.raises(CommandError) as caught:
        import_wikidata("Q1022", "Q" * 1_000_000)
    assert str(caught.value).splitlines()[1] == (
        f"  argument 2: 'QQQQQQQQQQQQQQQQQQQQ'... (1000000 characters) {NOT_AN_ID}"
    )


@pytest.mark.parametrize("length", [14, 21, 10_000_000])
def test_normalize_refuses_a_value_longer_than_any_id_quoting_at_most_20_characters(length: int) -> None:
    raw = "Q" + "1" * (length - 1)
    with pytest.raises(InvalidEntityId) as caught:
        normalize(raw)
    assert len(str(caught.value)) < 120
    assert raw[:14] in str(caught.value)


def test_an_overlong_id_sent_to_the_task_method_is_recorded_invalid_with_a_short_error(
    served: StandInWikidata,
) -> None:
    assert WikidataImporter().import_single("Q" + "1" * 9_999_999) == "invalid"
    (error,) = ImportOutcome.objects.values_list("error", flat=True)
    assert error == f"'Q1111111111111111111'... (10000000 characters) {NOT_AN_ID}"
    assert served.requests == []


# Scenario: a 200 MB file of junk, as a wrong path or a corrupt export gives --file.

JUNK_MB = 200
# The command's address space may not grow past this: were a line or the invalid lines kept
# whole, it would (a 200 MB junk file took 3.5 GB before they were bounded).
ADDRESS_SPACE = 1 << 30
# The most a command that refuses a junk file may write to stderr.
STDERR_BYTES = 16 * 1024


def write_junk(path: Path, megabytes: int) -> None:
    """Write about ``megabytes`` MB of junk: a quarter in one line of text, a million-odd short
    invalid lines per 200 MB, and the rest random bytes (lines of every length, mostly not UTF-8)."""
    random_block = os.urandom(1 << 20)
    with path.open("wb") as junk:
        junk.write(b"Q1022\n")
        for _ in range(megabytes // 4):
            junk.write(b"Q1" * (1 << 19))  # one line of text, megabytes / 4 MB long
        junk.write(b"\n")
        junk.write(b"nope\n" * (megabytes * 5000))
        for _ in range(megabytes * 3 // 4 - megabytes // 40):
            junk.write(random_block)


def run_with_fenced_memory(*args: str) -> tuple[int, bytes, int, float]:
    """Run ``import_wikidata`` in a process of its own, its address space fenced at ``ADDRESS_SPACE``.

    Returns its exit status, the start of its stderr, the size of its stderr, and its peak
    resident memory in MiB.
    """

    def fence() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    command = [sys.executable, "manage.py", "import_wikidata", *args]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=fence
        )
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        try:
            # wait4, not Popen.wait: it gives this child's own resource usage.
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        size = stderr.tell()
        stderr.seek(0)
        return process.returncode, stderr.read(STDERR_BYTES), size, usage.ru_maxrss / 1024


def test_a_200_mb_junk_file_is_refused_in_flat_memory_with_a_short_message(tmp_path: Path) -> None:
    small, large = tmp_path / "small.ids", tmp_path / "large.ids"
    write_junk(small, 4)
    write_junk(large, JUNK_MB)
    assert large.stat().st_size > JUNK_MB * 1_000_000

    _, _, _, baseline = run_with_fenced_memory("--file", str(small))
    status, stderr, size, peak = run_with_fenced_memory("--file", str(large))

    assert status == 1, stderr.decode(errors="replace")
    assert size < STDERR_BYTES
    message = stderr.decode()
    assert "Traceback" not in message
    counted = re.match(r"CommandError: (\d+) invalid ids; nothing was imported", message)
    assert counted, message
    assert f"  ... and {int(counted[1]) - 50} more\n" in message
    assert f"  line 2: a line of {JUNK_MB // 4 << 20} bytes, longer than 1024: not an id\n" in message
    assert peak - baseline < 16, f"peak RSS {peak:.0f} MiB against {baseline:.0f} MiB for 4 MB of junk"


def test_an_entity_id_is_defined_in_one_place() -> None:
    """``importers.entity_ids`` owns the pattern; the dump's readers, filters and --where build on it."""
    root = Path(__file__).resolve().parents[2]
    product = [*root.glob("importers/**/*.py"), *root.glob("core/**/*.py")]
    owners = sorted(str(path.relative_to(root)) for path in product if "[QPL]" in path.read_text())
    assert owners == ["importers/entity_ids.py"]
