"""The README's example importer works as the README says."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from core.registry import registry
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("registry_snapshot")


def example_importer() -> dict[str, Any]:
    """Run the README's "Writing an importer" code block; return its namespace."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing an importer") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 3)], re.DOTALL)
    namespace: dict[str, Any] = {"__name__": "myapp.importers"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_the_readme_example_registers_and_runs_in_process() -> None:
    book_importer = example_importer()["BookImporter"]
    assert registry["BookImporter"] is book_importer
    importer = book_importer()
    assert importer.import_bulk(["978-3", "978-4"], source="dnb") == 2
    assert inspect.ismethod(importer.normalize)
    assert not hasattr(importer.normalize, "as_task")
    options = importer.import_single.as_task.si("978-3").options
    assert (options["queue"], options["priority"], options["soft_time_limit"]) == ("books", 5, 60)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda books: books().import_single.as_task(978), "isbn is an int (978), expected str"),
        (lambda books: books().import_bulk.as_task("978-3"), "isbns is a str ('978-3'), expected list[str]"),
        (lambda books: books().import_bulk.as_task([], source="bnf"), "source is a str ('bnf'), expected"),
        (lambda books: books().import_single.as_task("1", tags=["a"]), "tags is a list"),
    ],
)
def test_the_readme_examples_arguments_are_typed(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        call(example_importer()["BookImporter"])
