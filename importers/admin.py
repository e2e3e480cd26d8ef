"""Browse imported entities, redirects, runs and outcomes in the Django admin, and send imports from it.

Every page reads a bounded number of rows whatever the tables hold: no list loads a document
(``data``, up to hundreds of kilobytes each), a foreign key to an entity is an autocomplete rather
than a ``<select>`` of every entity, and a run's outcomes are the outcome list filtered by run,
paginated, rather than an inline of thousands of rows.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import models, transaction
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from core.admin import ReadOnlyAdmin
from core.sender import runs_in_process

from . import runs
from .document_html import document_html
from .dump import admin as dump_admin  # noqa: F401  (the dump imports' pages)
from .follow import admin as follow_admin  # noqa: F401  (the follower's page)
from .models import (
    SUCCESSFUL,
    ImportOutcome,
    ImportRun,
    RunOrigin,
    RunOutcome,
    Status,
    WikidataEntity,
    WikidataRedirect,
)

# The most entities one admin action sends: a run is built in the request, and ten pages of
# entities is what a person selects by hand; the import_wikidata command takes more.
MAX_SELECTED = 1000
# Wikidata's namespace of each kind of id; items live in the main namespace.
NAMESPACES = {"P": "Property:", "L": "Lexeme:"}
# The status filter's value for the ids of a run that have no outcome yet (stored as "").
NO_OUTCOME = "none"


def wikidata_url(wikidata_id: str) -> str:
    """Return the address of the entity's page on the Wikidata that ``WIKIDATA_BASE_URL`` names."""
    namespace = NAMESPACES.get(wikidata_id[:1], "")
    return f"{settings.WIKIDATA_BASE_URL.rstrip('/')}/wiki/{namespace}{wikidata_id}"


def run_outcomes_url(run_id: int, **filters: str) -> str:
    """Return the address of the list of a run's outcomes, with ``filters`` (``status="failed"``)."""
    query = urlencode({"run": str(run_id), **filters})
    return f"{reverse('admin:importers_runoutcome_changelist')}?{query}"


class EntityAutocompleteAdmin(admin.ModelAdmin):
    """An admin whose foreign keys to entities are autocompleted without loading their documents.

    The autocomplete widget shows the selected entity by reading it through the form field's
    queryset, and the form validates a choice through it too: deferring ``data`` there keeps a
    400 KB document out of an edit page that shows only the entity's id and label.
    """

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is WikidataEntity:
            kwargs.setdefault("queryset", WikidataEntity.objects.defer("data"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(WikidataEntity)
class WikidataEntityAdmin(ReadOnlyAdmin):
    """Entities as imported, read-only: an import writes them, so an edit here would be a lie.

    The actions send imports through ``as_task``; deleting stays possible for those allowed to.
    """

    list_display = (
        "wikidata_id",
        "entity_type",
        "label",
        "description",
        "lastrevid",
        "modified",
        "fetched_at",
        "on_wikidata",
    )
    list_filter = ("entity_type",)
    show_full_result_count = False  # a second COUNT of a table that may hold millions
    search_fields = ("wikidata_id", "label")  # also what the autocomplete of other pages searches
    ordering = ("wikidata_id",)  # the primary key's index; the autocomplete pages need an order
    fields = (
        "wikidata_id",
        "on_wikidata",
        "entity_type",
        "label",
        "description",
        "lastrevid",
        "modified",
        "fetched_at",
        "document",
    )
    readonly_fields = fields
    actions = ("refresh_selected", "reimport_selected")

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("importers/document.css",)}
        js = ("importers/document.js",)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[WikidataEntity]:
        # Lists, searches and actions never need the document; the entity page reads it when shown.
        return super().get_queryset(request).defer("data")

    def has_import_permission(self, request: HttpRequest) -> bool:
        """Whether the user may send imports: they rewrite entities, so it takes the change permission."""
        return request.user.has_perm("importers.change_wikidataentity")

    @admin.display(description="on Wikidata")
    def on_wikidata(self, entity: WikidataEntity) -> str:
        url = wikidata_url(entity.pk)
        return format_html('<a href="{}" rel="noopener">{}</a>', url, url)

    @admin.display(description="document")
    def document(self, entity: WikidataEntity) -> str:
        return document_html(entity.data)

    @admin.action(
        description="Refresh selected entities (store those whose revision changed)", permissions=["import"]
    )
    def refresh_selected(self, request: HttpRequest, queryset: models.QuerySet[WikidataEntity]) -> None:
        """Import the selected entities again; an entity whose revision is stored ends ``unchanged``.

        Each is fetched whole: whether its revision changed is known only from the document.
        """
        self._send_imports(request, queryset, "refresh", rewrite=False)

    @admin.action(
        description="Re-import selected entities (rewrite them even when unchanged)", permissions=["import"]
    )
    def reimport_selected(self, request: HttpRequest, queryset: models.QuerySet[WikidataEntity]) -> None:
        """Import the selected entities again and rewrite them, label and description recomputed.

        The imports rewrite a document of the stored revision too (``rewrite``), never an older
        one: nothing stored is forgotten or lowered while they are on their way.
        """
        self._send_imports(request, queryset, "re-import", rewrite=True)

    def _send_imports(
        self,
        request: HttpRequest,
        queryset: models.QuerySet[WikidataEntity],
        verb: str,
        *,
        rewrite: bool,
    ) -> None:
        """Record a run of the selected ids, and send it once the request's transaction commits."""
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: MAX_SELECTED + 1])
        if len(ids) > MAX_SELECTED:
            self.message_user(
                request,
                f"Select at most {MAX_SELECTED:,} entities to {verb} at once; "
                "`manage.py import_wikidata --file` takes any number.",
                messages.ERROR,
            )
            return
        run = runs.start(RunOrigin.ADMIN)
        ids = list(
            runs.requested(run, ((wikidata_id, f"admin {verb}") for wikidata_id in ids), runs.Duplicates())
        )
        run.set_requested(len(ids))
        # A worker must find the run: send after the commit, where a broker failure can still
        # be told apart and undone (as_task would defer the send itself, but then raise after it).
        transaction.on_commit(functools.partial(self._send_run, request, run, ids, verb, rewrite))

    def _send_run(
        self,
        request: HttpRequest,
        run: ImportRun,
        ids: list[str],
        verb: str,
        rewrite: bool,
    ) -> None:
        """Send the run's ids, and say where to follow them; withdraw the run if the broker is down."""
        here = runs_in_process()
        try:
            runs.hand_over(run, ids, rewrite)
        except runs.NotSent as error:
            self.message_user(
                request,
                f"Nothing was sent: the broker could not be reached ({error.reason}).",
                messages.ERROR,
            )
            return
        noun = "entity" if len(ids) == 1 else "entities"
        done = "ran here" if here else "was sent to the workers"
        self.message_user(
            request,
            format_html(
                'The {} of {} {} {} as <a href="{}">{}</a>.',
                verb,
                len(ids),
                noun,
                done,
                run_outcomes_url(run.pk),
                f"run {run.pk}",
            ),
            messages.SUCCESS,
        )


@admin.register(WikidataRedirect)
class WikidataRedirectAdmin(EntityAutocompleteAdmin):
    list_display = ("wikidata_id", "target")
    list_select_related = ("target",)
    search_fields = ("wikidata_id", "target__wikidata_id")
    autocomplete_fields = ("target",)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[WikidataRedirect]:
        return super().get_queryset(request).select_related("target").defer("target__data")


@admin.register(ImportRun)
class ImportRunAdmin(ReadOnlyAdmin):
    """Runs, read-only: a command or an action records them, and ``--wait`` relies on ``requested``."""

    list_display = (
        "id",
        "state",
        "origin",
        "created_at",
        "last_outcome_at",
        "requested",
        "finished",
        "not_imported",
        "outcomes",
    )
    fields = ("origin", "created_at", "requested", "outcomes_by_status")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[ImportRun]:
        # A subquery rather than a join and GROUP BY: counted for the rows of one page only,
        # through the (run, status) index.
        finished = (
            RunOutcome.objects.filter(run=models.OuterRef("pk"))
            .exclude(status="")
            .order_by()
            .values("run")
            .annotate(count=models.Count("pk"))
            .values("count")
        )
        not_imported = (
            RunOutcome.objects.filter(run=models.OuterRef("pk"), status__in=NOT_IMPORTED)
            .order_by()
            .values("run")
            .annotate(count=models.Count("pk"))
            .values("count")
        )
        last = (
            RunOutcome.objects.filter(run=models.OuterRef("pk"))
            .exclude(status="")
            .order_by("-updated_at")
            .values("updated_at")[:1]
        )
        queryset: models.QuerySet[ImportRun] = super().get_queryset(request)
        return queryset.annotate(
            finished=Coalesce(models.Subquery(finished), 0, output_field=models.IntegerField()),
            not_imported=Coalesce(models.Subquery(not_imported), 0, output_field=models.IntegerField()),
            last_outcome_at=models.Subquery(last),
        )

    @admin.display(description="state")
    def state(self, run: ImportRun) -> str:
        """Running or finished, and whether an id was not imported: a failed run must not look good."""
        finished: int = getattr(run, "finished")  # noqa: B009 (annotations, unknown to type checkers)
        failures: int = getattr(run, "not_imported")  # noqa: B009
        state = "running" if finished < run.requested else "finished"
        return f"{state}, with failures" if failures else state

    # Counted for the rows of one page; not sortable: sorting would count the outcomes of every run
    # (12 minutes over 100,001 runs).
    @admin.display(description="not imported")
    def not_imported(self, run: ImportRun) -> int:
        """How many ids ended failed, missing or invalid (the run's page counts each)."""
        count: int = getattr(run, "not_imported")  # noqa: B009
        return count

    @admin.display(description="last outcome at")
    def last_outcome_at(self, run: ImportRun) -> Any:
        return getattr(run, "last_outcome_at")  # noqa: B009

    @admin.display(description="with an outcome")
    def finished(self, run: ImportRun) -> int:
        finished: int = getattr(run, "finished")  # noqa: B009 (an annotation, unknown to type checkers)
        return finished

    @admin.display(description="outcomes")
    def outcomes(self, run: ImportRun) -> str:
        return format_html('<a href="{}">outcomes of run {}</a>', run_outcomes_url(run.pk), run.pk)

    @admin.display(description="outcomes")
    def outcomes_by_status(self, run: ImportRun) -> str:
        # Failures first: what went wrong is what a reader of a run's page looks for.
        counts = dict(sorted(run.status_counts().items(), key=lambda item: item[0] in SUCCESSFUL))
        waiting = run.requested - sum(counts.values())
        links = [(run_outcomes_url(run.pk), f"all {run.requested:,} ids")]
        links += [
            (run_outcomes_url(run.pk, status=status), f"{status}: {n:,}") for status, n in counts.items()
        ]
        if waiting > 0:
            links.append((run_outcomes_url(run.pk, status=NO_OUTCOME), f"no outcome yet: {waiting:,}"))
        return format_html_join(" · ", '<a href="{}">{}</a>', links)


# The outcomes of ids that were not imported: what makes a run one "with failures".
NOT_IMPORTED = (Status.FAILED, Status.MISSING, Status.INVALID)


class RunFilter(admin.SimpleListFilter):
    """The run whose outcomes are listed: offered only once chosen, since runs are many."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, f"Run {value}")] if value else []

    def queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"run must be a run's number, not {value!r}")
        return queryset.filter(run_id=int(value))


class RunOutcomeStatusFilter(admin.SimpleListFilter):
    """The outcome, or none yet: a run's ids wait with an empty status until their task ends."""

    title = "outcome"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*((status.value, status.value) for status in Status), (NO_OUTCOME, "no outcome yet")]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(status="" if value == NO_OUTCOME else value)


class OutcomeAdmin(ReadOnlyAdmin, EntityAutocompleteAdmin):
    """What the two outcome lists share: records, read-only; their run and entity in the same query,
    never a document."""

    list_select_related = ("run", "entity")
    search_fields = ("wikidata_id",)
    raw_id_fields = ("run",)
    autocomplete_fields = ("entity",)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return super().get_queryset(request).select_related("run", "entity").defer("entity__data")


@admin.register(RunOutcome)
class RunOutcomeAdmin(OutcomeAdmin):
    list_display = ("wikidata_id", "run", "status", "origin", "entity", "attempts", "error", "updated_at")
    list_filter = (RunFilter, RunOutcomeStatusFilter)
    show_full_result_count = False  # every run's outcomes, counted to show one run's


@admin.register(ImportOutcome)
class ImportOutcomeAdmin(OutcomeAdmin):
    list_display = ("wikidata_id", "status", "entity", "attempts", "error", "run", "updated_at")
    list_filter = ("status",)
    show_full_result_count = False  # a second COUNT of a table as large as the entities'
