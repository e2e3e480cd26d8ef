"""The core app: registers every installed app's importers at start-up, and connects the worker signals."""

from importlib import import_module

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import module_has_submodule

from core.worker import connect_worker_signals


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Importer core"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the checks of the bounds' settings)

        discover_importers()
        connect_worker_signals()


def discover_importers() -> None:
    """Import the ``importers`` module of every installed app, as the admin finds ``admin.py``.

    Importing the module is what registers its importer classes (their metaclass does it),
    in every process that loads Django: web, management commands and Celery workers.

    Raises:
        ImproperlyConfigured: an app's ``importers`` module failed to import; names the app.
    """
    for app_config in apps.get_app_configs():
        if not module_has_submodule(app_config.module, "importers"):
            continue
        module_name = f"{app_config.name}.importers"
        try:
            import_module(module_name)
        except Exception as error:
            raise ImproperlyConfigured(
                f"App '{app_config.label}' has an importers module ({module_name}) "
                f"that failed to import: {error!r}"
            ) from error
