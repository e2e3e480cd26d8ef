"""The Wikidata importers: by id through the API (one Celery task per id, or per batch of up to
50 ids) here, and from the JSON dump (``importers.dump``), registered with them at app loading."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from celery.result import EagerResult
from django.conf import settings

from core.database import UNAVAILABLE
from core.exceptions import EnqueueFailed, PoisonMessage, TaskFailed
from core.importer import BaseImporter, as_task

from .documents import Batch, Fetched
from .dump.importer import WikidataDumpImporter
from .entity_ids import InvalidEntityId, normalize
from .models import Status
from .storage import Storage
from .wikidata_api import (
    MAX_BATCH,
    EntityInvalid,
    EntityMissing,
    FetchError,
    FetchFailed,
    fetch_batch,
    fetch_entity,
)

if TYPE_CHECKING:
    from core.message import Message

__all__ = ("WikidataDumpImporter", "WikidataImporter", "chunked")

T = TypeVar("T")

# The outcome each kind of fetch error ends in; a ``failed`` one fails the task too.
FETCH_ERROR_OUTCOMES: dict[type[FetchError], Status] = {
    EntityMissing: Status.MISSING,
    EntityInvalid: Status.INVALID,
    FetchFailed: Status.FAILED,
}
OUT_OF_TIME = "the task ran out of time (CELERY_TASK_SOFT_TIME_LIMIT)"
# An outcome's error is for people: long enough for a traceback's last line, not for a document.
MAX_ERROR = 2000
# An answer older than the change feed's revision (a lagging replica) is asked for again after
# this many seconds, doubling, this many times: 5 + 10 + 20 + 40 + 80 s, within IMPORTER_MAX_COUNTDOWN.
LAG_RETRY_SECONDS = 5
LAG_RETRIES = 5

logger = logging.getLogger(__name__)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of ``size`` items (the last may be shorter), consuming ``items`` lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class WikidataImporter(BaseImporter):
    """Imports Wikidata entities (items, properties, lexemes) by id into ``WikidataEntity``."""

    queue = settings.WIKIDATA_QUEUE

    @as_task
    def import_bulk(
        self,
        wikidata_ids: Iterable[str],
        run_id: int | None = None,
        batch_size: int = 1,
        rewrite: bool = False,
        at_least: Mapping[str, int] | None = None,
    ) -> int:
        """Send one ``import_single`` task per id, or one ``import_batch`` per ``batch_size`` ids.

        ``rewrite`` rewrites a stored revision that is the same (to relabel it, say), never an older one.
        ``at_least`` gives ids the revision known to exist (from the change feed): a batch whose
        answer is older tries those ids again later (see ``import_batch``).

        Returns how many ids were sent. ``wikidata_ids`` may be any iterable when called
        directly, so a file of ids is streamed, never loaded whole. Inside
        ``core.sender.in_process()`` the tasks run here, ``WIKIDATA_IN_PROCESS_THREADS`` at once.

        Raises:
            ValueError: ``batch_size`` is not between 1 and 50.
            EnqueueFailed: the broker could not be reached; ``sent`` counts the ids that went out.
        """
        return self.send_ids(wikidata_ids, run_id, batch_size, rewrite, at_least)

    def send_ids(
        self,
        wikidata_ids: Iterable[str],
        run_id: int | None = None,
        batch_size: int = 1,
        rewrite: bool = False,
        at_least: Mapping[str, int] | None = None,
        ended: Callable[[list[str]], None] | None = None,
    ) -> int:
        """What ``import_bulk`` does; and, when the calls run here, ``ended`` is called with the ids
        of each as it ends (a batch's ids handed on one by one end before it, and come with it)."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}")
        sender = self.import_single.as_task if batch_size == 1 else self.import_batch.as_task
        consumed = 0

        def calls() -> Iterator[dict[str, Any]]:
            nonlocal consumed
            for chunk in chunked(wikidata_ids, batch_size):
                consumed += len(chunk)
                # Only when asked for: the messages of ordinary imports stay as small as they were.
                extra: dict[str, Any] = {"rewrite": True} if rewrite else {}
                if at_least and batch_size > 1:
                    extra["at_least"] = {id: at_least[id] for id in chunk if id in at_least}
                if batch_size == 1:
                    yield {"wikidata_id": chunk[0], "run_id": run_id, **extra}
                else:
                    yield {"wikidata_ids": chunk, "run_id": run_id, **extra}

        try:
            # In process, several calls at once: the request budget bounds their requests.
            sender.send_many(
                calls(),
                threads=settings.WIKIDATA_IN_PROCESS_THREADS,
                ended=None if ended is None else lambda kwargs, _: ended(_ids_of(kwargs)),
            )
        except EnqueueFailed as error:
            error.sent *= batch_size  # ids, not tasks: every chunk but the last is full
            raise
        return consumed

    @as_task
    def import_batch(
        self,
        wikidata_ids: list[str],
        run_id: int | None = None,
        rewrite: bool = False,
        at_least: dict[str, int] | None = None,
        lagged: int = 0,
    ) -> dict[str, str]:
        """Fetch up to 50 entities with one request and store them with one upsert.

        Returns the outcome of each id ("sent" for one handed on to a task of its own). Ids
        the response leaves out, and every id when the whole batch fails after retries, fall
        back to one ``import_single`` task each, and a document that cannot be stored is stored
        alone, so one bad id cannot sink the others.

        An id of ``at_least`` answered with an older revision than that (a replica behind the
        primary, which the change feed is not) is sent again in a batch of its own after
        ``LAG_RETRY_SECONDS`` doubling, ``LAG_RETRIES`` times (``lagged`` counts them); then the
        revision served is stored as any answer is. A redirect is answered with its target's
        revision, older than the event: that is its answer, not a lag.

        Raises:
            ValueError: more than 50 ids.
        """
        if len(wikidata_ids) > MAX_BATCH:
            raise ValueError(f"import_batch takes at most {MAX_BATCH} ids, not {len(wikidata_ids)}")
        storage = Storage(run_id, self.task_id, rewrite)
        valid, outcomes = [], {}
        for wikidata_id in wikidata_ids:
            try:
                valid.append(normalize(wikidata_id))
            except InvalidEntityId as error:
                storage.record(wikidata_id[:64], Status.INVALID, error=str(error))
                outcomes[wikidata_id] = str(Status.INVALID)
        valid = list(dict.fromkeys(valid))  # "Q42" and "q42" are one id, asked for once
        with _failures_recorded(storage, lambda: [id for id in valid if id not in outcomes]):
            try:
                batch = fetch_batch(valid)
            except (FetchFailed, SoftTimeLimitExceeded):
                return outcomes | self._one_by_one(valid, run_id, rewrite)
            lagging = self._lagging(batch, at_least or {}) if lagged < LAG_RETRIES else {}
            if lagging:
                served = {asked: doc for asked, doc in batch.documents.items() if asked not in lagging}
                batch = replace(batch, documents=served)
                outcomes |= self._again_later(lagging, run_id, rewrite, lagged)
            try:
                stored = storage.store_batch(batch)
            except UNAVAILABLE:
                raise
            except Exception:
                stored = self._store_each(storage, batch)
            outcomes |= {asked: str(status) for asked, status in stored.items()}
            return outcomes | self._one_by_one(batch.absent, run_id, rewrite)

    @staticmethod
    def _lagging(batch: Batch, at_least: Mapping[str, int]) -> dict[str, int]:
        """The ids answered with an older revision than the one known to exist (redirects aside)."""
        lagging = {}
        for asked, document in batch.documents.items():
            revision = document.get("lastrevid")
            redirected = document.get("id") != asked
            older = isinstance(revision, int) and revision < at_least.get(asked, 0)
            if older and not redirected:
                lagging[asked] = at_least[asked]
        return lagging

    def _again_later(
        self, lagging: dict[str, int], run_id: int | None, rewrite: bool, lagged: int
    ) -> dict[str, str]:
        """Send the lagging ids again, after a wait that doubles each time; their outcome: "sent"."""
        countdown = LAG_RETRY_SECONDS * 2**lagged
        logger.info(
            "%d ids were served older revisions than the change feed told of; asking again in %g s",
            len(lagging), countdown,
        )  # fmt: skip
        kwargs: dict[str, Any] = {"wikidata_ids": list(lagging), "run_id": run_id, "at_least": lagging,
                                  "lagged": lagged + 1}  # fmt: skip
        if rewrite:
            kwargs["rewrite"] = True
        self.import_batch.as_task.apply_async(kwargs=kwargs, countdown=countdown)
        return dict.fromkeys(lagging, "sent")

    def _store_each(self, storage: Storage, batch: Batch) -> dict[str, Status]:
        """Store a batch's documents one by one, recording ``failed`` for each that cannot be stored."""
        stored = storage.store_batch(Batch({}, batch.missing, [], batch.attempts, batch.failed))
        for asked, document in batch.documents.items():
            try:
                stored[asked] = storage.store(asked, Fetched(str(document["id"]), document, batch.attempts))
            except UNAVAILABLE:
                raise
            except Exception as error:
                storage.record(
                    asked, Status.FAILED, error=_could_not("store", error), attempts=batch.attempts
                )
                stored[asked] = Status.FAILED
        return stored

    def _one_by_one(self, wikidata_ids: list[str], run_id: int | None, rewrite: bool) -> dict[str, str]:
        """Import each id as a task of its own; return the outcomes known here ("sent" for the others)."""
        outcomes = {}
        extra = {"rewrite": True} if rewrite else {}
        for wikidata_id in wikidata_ids:
            result = self.import_single.as_task(wikidata_id=wikidata_id, run_id=run_id, **extra)
            ran_here = isinstance(result, EagerResult) and result.successful()
            outcomes[wikidata_id] = str(result.result) if ran_here else "sent"
        return outcomes

    @as_task
    def import_single(self, wikidata_id: str, run_id: int | None = None, rewrite: bool = False) -> str:
        """Fetch one entity and store it; record and return the outcome for ``wikidata_id``.

        Whatever goes wrong, the id gets an outcome: ``failed``, with the error, for anything
        but an unavailable database (then nothing can be recorded, and the method caller sends
        the task again).

        Raises:
            TaskFailed: the fetch failed for good (after retries); the outcome says why.
        """
        storage = Storage(run_id, self.task_id, rewrite)
        try:
            asked_id = normalize(wikidata_id)
        except InvalidEntityId as error:
            storage.record(wikidata_id[:64], Status.INVALID, error=str(error))
            return Status.INVALID
        with _failures_recorded(storage, lambda: [asked_id]):
            try:
                fetched = fetch_entity(asked_id)
            except SoftTimeLimitExceeded:
                return self._fetch_failed(storage, asked_id, FetchFailed(OUT_OF_TIME, attempts=0))
            except FetchError as error:
                return self._fetch_failed(storage, asked_id, error)
            return storage.store(asked_id, fetched)

    @classmethod
    def poisoned(cls, message: Message, error: PoisonMessage) -> None:
        """Record ``failed`` for the ids of an ``import_single`` or ``import_batch`` call not run again.

        Its task killed the pool process running it too often (see ``BaseImporter.poisoned``).
        An ``import_bulk`` call records nothing: each id it sent has a task of its own.
        """
        arguments = message.method.signature.bind(None, *message.args, **message.kwargs).arguments
        if message.method_name == "import_single":
            ids = [arguments["wikidata_id"]]
        elif message.method_name == "import_batch":
            ids = arguments["wikidata_ids"]
        else:
            return
        storage = Storage(arguments.get("run_id"), error.task_id)
        for asked_id in dict.fromkeys(_asked_id(wikidata_id) for wikidata_id in ids):
            storage.record(asked_id, Status.FAILED, error=f"not imported: {error}"[:MAX_ERROR])

    def _fetch_failed(self, storage: Storage, asked_id: str, error: FetchError) -> Status:
        """Record the outcome a fetch error ends in, and return it.

        Raises:
            TaskFailed: the outcome is ``failed``: the task fails too.
        """
        status = FETCH_ERROR_OUTCOMES[type(error)]
        # Shown beside its id (in the admin, and "Q404: missing: ..."): not the id again.
        message = str(error).removeprefix(f"{asked_id}: ")
        storage.record(asked_id, status, error=message, attempts=error.attempts)
        if status == Status.FAILED:
            raise TaskFailed(f"{asked_id} failed: {error}")
        return status


def _ids_of(kwargs: Mapping[str, Any]) -> list[str]:
    """The ids of an ``import_single`` or ``import_batch`` call, from its keyword arguments."""
    ids: list[str] = kwargs["wikidata_ids"] if "wikidata_ids" in kwargs else [kwargs["wikidata_id"]]
    return ids


def _asked_id(wikidata_id: str) -> str:
    """The id as its outcome is recorded: normalized, or cut short where it is not an id at all."""
    try:
        return normalize(wikidata_id)
    except InvalidEntityId:
        return wikidata_id[:64]


def _could_not(what: str, error: BaseException) -> str:
    """An outcome's error for an exception nobody expected: its type and message, bounded."""
    return f"could not {what}: {type(error).__name__}: {error}"[:MAX_ERROR]


@contextlib.contextmanager
def _failures_recorded(storage: Storage, ids: Callable[[], list[str]]) -> Iterator[None]:
    """Record ``failed`` for ``ids()`` when the block raises what nobody expected, then re-raise it.

    Expected failures (``TaskFailed``) are recorded already; with the database unavailable,
    nothing can be, and the method caller sends the task again.
    """
    try:
        yield
    except (TaskFailed, *UNAVAILABLE):
        raise
    except Exception as error:
        for wikidata_id in ids():
            storage.record(wikidata_id, Status.FAILED, error=_could_not("import", error))
        raise
