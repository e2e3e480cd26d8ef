"""The Heroku manifest (``app.json``) against the Procfile and the settings it names.

Format: https://devcenter.heroku.com/articles/app-json-schema (the Heroku button and review apps
read it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = ROOT / "config" / "settings"


def manifest() -> dict[str, Any]:
    return dict(json.loads((ROOT / "app.json").read_text()))


def procfile_types() -> set[str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {line.partition(":")[0] for line in lines if line.strip()}


def variables_read_by_settings() -> set[str]:
    text = "".join(path.read_text() for path in SETTINGS.glob("*.py"))
    return set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', text))


def test_the_formation_runs_the_procfiles_long_running_processes() -> None:
    formation = set(manifest()["formation"])
    # release is Heroku's release phase, not a dyno of the formation.
    assert formation == procfile_types() - {"release"}


def test_every_variable_it_sets_is_read_by_the_settings_and_every_secret_is_generated() -> None:
    env = manifest()["env"]
    assert set(env) <= variables_read_by_settings() | {"DJANGO_SETTINGS_MODULE"}
    assert env["DJANGO_SECRET_KEY"] == {**env["DJANGO_SECRET_KEY"], "generator": "secret"}
    assert "value" not in env["DJANGO_SECRET_KEY"]


def test_its_add_ons_set_the_urls_the_production_settings_need() -> None:
    plans = {addon["plan"].partition(":")[0]: addon.get("as") for addon in manifest()["addons"]}
    assert plans == {"heroku-postgresql": "DATABASE", "heroku-redis": "REDIS"}  # DATABASE_URL, REDIS_URL


def test_the_production_settings_start_and_pass_the_deploy_checks_with_what_it_gives() -> None:
    """As a new app gets it: the manifest's values, a generated secret, and the add-ons' URLs."""
    env = {name: spec.get("value", "") for name, spec in manifest()["env"].items()}
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)  # what "generator": "secret" makes
    env["WIKIDATA_USER_AGENT"] = "review-app/1.0 (ops@example.org)"  # required: the user fills it in
    env["DATABASE_URL"] = "postgres://user:password@db.example.com:5432/d1"
    env["REDIS_URL"] = "rediss://:password@redis.example.com:6380"
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "DATABASE_", "REDIS_"))
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
