"""App config of the shipped importers."""

from django.apps import AppConfig


class ImportersConfig(AppConfig):
    name = "importers"
    verbose_name = "Importers"

    def ready(self) -> None:
        # The importers module holds the API importer; the dump importer is registered beside it,
        # and its admin pages beside those of importers.admin (kept apart: a module per feature).
        from . import dump_admin, dump_importer  # noqa: F401
