"""The Wikidata dump importer: one Celery task per chunk of a JSON dump, on any number of workers."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from core.database import UNAVAILABLE, patiently
from core.exceptions import TaskFailed
from core.importer import BaseImporter, as_task

from ..models import ChunkStatus, DumpChunk
from .chunks import import_chunk

if TYPE_CHECKING:
    from core.exceptions import PoisonMessage
    from core.message import Message

# A chunk's error is for people: a traceback's last line, not a document.
MAX_ERROR = 2000


class WikidataDumpImporter(BaseImporter):
    """Imports the chunks of a Wikidata JSON dump (cut by ``import_wikidata_dump``) into ``WikidataEntity``.

    Its tasks make no request to Wikidata: they go to ``WIKIDATA_DUMP_QUEUE`` (by default
    Celery's default queue), not to the Wikidata queue whose concurrency Wikimedia's limits set.
    """

    queue = settings.WIKIDATA_DUMP_QUEUE or None

    @as_task
    def import_chunk(self, chunk_id: int) -> str:
        """Import one chunk, and mark it done with its counts in the same transaction; return its status.

        A chunk done already (a message delivered twice, a re-run) is left alone. A chunk file
        is removed once its chunk is done. Whatever goes wrong, the chunk records ``failed``
        with the error, except an unavailable database: then the method caller sends the task
        again.

        Raises:
            TaskFailed: the chunk failed (its error says why); nothing of it was written.
        """
        chunk = patiently(lambda: DumpChunk.objects.select_related("dump").get(pk=chunk_id))
        try:
            patiently(lambda: import_chunk(chunk, self.task_id))
        except UNAVAILABLE:
            raise
        except SoftTimeLimitExceeded:
            self._failed(
                chunk, "the chunk ran out of time (CELERY_TASK_SOFT_TIME_LIMIT): make chunks smaller"
            )
            raise TaskFailed(f"chunk {chunk.number} of dump import {chunk.dump_id} ran out of time") from None
        except Exception as error:
            self._failed(chunk, f"{type(error).__name__}: {error}")
            raise TaskFailed(
                f"chunk {chunk.number} of dump import {chunk.dump_id} failed: {error}"
            ) from error
        if chunk.file != chunk.dump.path:  # a chunk file of a compressed dump: no longer needed
            with contextlib.suppress(FileNotFoundError):
                os.remove(chunk.file)
        return ChunkStatus.DONE

    @classmethod
    def poisoned(cls, message: Message, error: PoisonMessage) -> None:
        """Record ``failed`` for a chunk whose task killed its pool process too often (out of memory, say)."""
        arguments = message.method.signature.bind(None, *message.args, **message.kwargs).arguments
        chunk = DumpChunk.objects.filter(pk=int(arguments["chunk_id"])).first()
        if chunk is not None:
            cls._failed(chunk, f"not imported: {error}")

    @staticmethod
    def _failed(chunk: DumpChunk, error: str) -> None:
        """Record the chunk ``failed``, unless another delivery finished it meanwhile."""
        patiently(
            lambda: DumpChunk.objects.filter(pk=chunk.pk)
            .exclude(status=ChunkStatus.DONE)
            .update(status=ChunkStatus.FAILED, error=error[:MAX_ERROR])
        )
