"""Discovery: every installed app's importers module is imported when Django loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.conftest import ROOT


def test_a_fresh_process_registers_the_importers_of_installed_apps() -> None:
    # Nothing in this process imports tests.example_app.importers: app loading must.
    code = (
        "import django, json, sys; django.setup(); "
        "from core.registry import registry; "
        "print(json.dumps({'keys': sorted(registry), "
        "'loaded': 'tests.example_app.importers' in sys.modules}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True)
    seen = json.loads(output.stdout)
    assert seen["loaded"]
    assert {"ConcreteImporter", "InheritingImporter", "Recorder"} <= set(seen["keys"])


def test_a_broken_importers_module_fails_loudly_naming_the_app() -> None:
    broken = [*settings.INSTALLED_APPS, "tests.broken_app"]
    with pytest.raises(ImproperlyConfigured) as caught, override_settings(INSTALLED_APPS=broken):
        pass
    message = str(caught.value)
    assert "App 'broken_app'" in message
    assert "tests.broken_app.importers" in message
    assert "broken on purpose" in message
