"""App config of the test importers."""

from django.apps import AppConfig


class ExampleAppConfig(AppConfig):
    name = "tests.example_app"
    label = "example_app"
