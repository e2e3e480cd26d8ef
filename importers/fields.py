"""A JSON field for large documents, written without the costs Django's bulk path adds."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from .jsoncodec import dumps


class DocumentField(models.JSONField):
    """A ``JSONField`` for entity documents of tens of kilobytes, bulk-upserted 50 at a time.

    On PostgreSQL, Django's ``bulk_create`` sends the rows as arrays (``UNNEST``), and psycopg
    quotes each document into an array literal with a regular expression: about 300 ms for 50
    documents of 30 KB. Giving the field a placeholder makes Django send one parameter per
    document instead (about 4 times faster), and orjson encodes them about 5 times faster
    than the standard library.
    """

    def get_placeholder(self, value: Any, compiler: Any, connection: BaseDatabaseWrapper) -> str:
        return "%s"

    def get_db_prep_value(self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False) -> Any:
        if connection.vendor != "postgresql" or value is None:
            return super().get_db_prep_value(value, connection, prepared)
        from psycopg.types.json import Jsonb

        return Jsonb(self.get_prep_value(value) if not prepared else value, dumps=dumps)
