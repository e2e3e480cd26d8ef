"""Production configuration: deploy checks, required secrets, and timings that must stay ordered."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import override_settings

import config.settings.base as production_defaults
from importers.wikidata_api import longest_fetch_seconds
from tests.conftest import ROOT

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "a-long-random-production-key-" + "x" * 40,
    "DJANGO_ALLOWED_HOSTS": "importers.example.org",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "PATH": os.environ["PATH"],
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def test_check_deploy_passes_with_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without_a_required_setting(missing: str) -> None:
    env = {name: value for name, value in PRODUCTION_ENV.items() if name != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: Set the {missing} environment variable" in result.stderr


def test_timings_are_ordered_so_that_no_task_runs_twice_while_it_still_runs() -> None:
    defaults = production_defaults
    # Retries happen inside the task: the longest fetch fits in the soft time limit, so a
    # slow import is recorded as failed rather than killed without a word.
    with override_settings(
        WIKIDATA_MAX_RETRIES=defaults.WIKIDATA_MAX_RETRIES,
        WIKIDATA_TIMEOUT=defaults.WIKIDATA_TIMEOUT,
        WIKIDATA_ATTEMPT_DEADLINE=defaults.WIKIDATA_ATTEMPT_DEADLINE,
        WIKIDATA_BACKOFF_FACTOR=defaults.WIKIDATA_BACKOFF_FACTOR,
        WIKIDATA_BACKOFF_MAX=defaults.WIKIDATA_BACKOFF_MAX,
        WIKIDATA_RETRY_AFTER_MAX=defaults.WIKIDATA_RETRY_AFTER_MAX,
    ):
        # And so does the wait for an unavailable database while storing what was fetched.
        longest_task = longest_fetch_seconds() + defaults.IMPORTER_DATABASE_WAIT
        assert longest_task < defaults.CELERY_TASK_SOFT_TIME_LIMIT
    assert defaults.CELERY_TASK_SOFT_TIME_LIMIT < defaults.CELERY_TASK_TIME_LIMIT
    # A task sent again for an unavailable database waits no longer than any countdown may.
    assert defaults.IMPORTER_DATABASE_RETRY_MAX_COUNTDOWN <= defaults.IMPORTER_MAX_COUNTDOWN
    # Redis redelivers a message unacknowledged for visibility_timeout seconds: that must
    # outlast the longest task plus the longest countdown it may wait before starting.
    visibility = defaults.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > defaults.CELERY_TASK_TIME_LIMIT + defaults.IMPORTER_MAX_COUNTDOWN
    assert defaults.CELERY_TASK_ACKS_LATE
    assert defaults.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert defaults.CELERY_WORKER_PREFETCH_MULTIPLIER == 1


def test_the_longest_fetch_grows_with_every_setting_it_depends_on() -> None:
    base = longest_fetch_seconds()
    for name, value in [
        ("WIKIDATA_MAX_RETRIES", 10),
        ("WIKIDATA_ATTEMPT_DEADLINE", 1000),
        ("WIKIDATA_BACKOFF_MAX", 1000),
        ("WIKIDATA_RETRY_AFTER_MAX", 1000),
    ]:
        with override_settings(**{name: value}):
            assert longest_fetch_seconds() > base, name
