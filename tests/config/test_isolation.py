"""A test run does not depend on the caller's shell: production variables exported there change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# What a developer following "Running workers" in the README, or a deployment's shell, may export.
HOSTILE_SHELL = {
    "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nowhere",
    "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/1",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "CELERY_TASK_DEFAULT_QUEUE": "celery",
    "WIKIDATA_LANGUAGE": "de",
}


def test_exported_production_variables_do_not_change_what_the_tests_test() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TEST_DATABASE")}
    tests = [
        "tests/core/test_worker.py::test_sets_and_tuples_survive_the_broker",  # a real worker
        "tests/importers/test_command.py::test_each_id_is_printed_with_its_outcome_and_label",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env={**env, **HOSTILE_SHELL},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout


def test_the_env_file_chooses_the_settings_module(tmp_path: Path) -> None:
    # Its first line in .env.example; before, manage.py had set its default before the file was read.
    env_file = tmp_path / ".env"
    env_file.write_text("DJANGO_SETTINGS_MODULE=config.settings.test\nWIKIDATA_LANGUAGE=fr\n")
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", "from django.conf import settings; "
         "print(settings.SETTINGS_MODULE)"],
        cwd=ROOT,
        env={**env, "DJANGO_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "config.settings.test"


def test_test_redis_url_moves_every_redis_the_tests_use_to_another_database() -> None:
    """Two checkouts share one Redis by giving each its own database (before: 13 to 15, hard-coded)."""
    env = {**os.environ, "TEST_REDIS_URL": "redis://127.0.0.1:6379/9"}
    tests = [
        "tests/core/test_worker.py::test_sets_and_tuples_survive_the_broker",  # a real worker on it
        "tests/core/test_budget.py",  # the shared budget's tests
    ]
    code = (
        "import sys, pytest; from django.conf import settings; "
        f"code = pytest.main(['-q', '-p', 'no:cacheprovider', *{tests!r}]); "
        "print('URLS', settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "URLS redis://127.0.0.1:6379/9 redis://127.0.0.1:6379/9" in done.stdout
