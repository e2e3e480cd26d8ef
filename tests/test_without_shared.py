"""A clone without ``../shared/wikidata``: the tests that read it skip, saying why; the rest pass."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# Every module that reads the real documents, the admin's browser tests among them.
READERS = [
    "tests/importers/test_admin_browser.py",
    "tests/importers/test_shared_documents.py",
    "tests/importers/dump/test_lines.py",
    "tests/support/test_wikidata_server.py",
]


def test_without_the_shared_documents_their_tests_skip_with_the_reason_and_nothing_fails() -> None:
    """Before: four admin browser tests failed, and Quick start's && never reached PostgreSQL."""
    env = {**os.environ, "TEST_SHARED_WIKIDATA": str(ROOT / "no-such-directory")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *READERS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "failed" not in done.stdout.splitlines()[-1]
    assert "no-such-directory is absent" in done.stdout
