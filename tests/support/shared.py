"""Where the real Wikidata documents of ``../shared/wikidata`` are, and the mark of the tests that read them.

They are public documents that nobody here wrote, kept beside the project, not in it: a user's
clone has none, and its tests that need them skip, saying why. ``bash .ci/run`` refuses to run
without them, so that CI never skips. ``TEST_SHARED_WIKIDATA`` points elsewhere (the tests of this
very rule point it at nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["NEEDS_SHARED", "SHARED"]

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED = Path(os.environ.get("TEST_SHARED_WIKIDATA") or ROOT.parent / "shared" / "wikidata")
NEEDS_SHARED = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} is absent: the real Wikidata documents are not in the repository"
)
