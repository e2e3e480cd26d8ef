"""Browse imported entities, redirects, runs and outcomes in the Django admin."""

from django.contrib import admin

from .models import ImportOutcome, ImportRun, RunOutcome, WikidataEntity, WikidataRedirect


@admin.register(WikidataEntity)
class WikidataEntityAdmin(admin.ModelAdmin):
    list_display = ("wikidata_id", "entity_type", "label", "lastrevid", "modified", "fetched_at")
    list_filter = ("entity_type",)
    search_fields = ("wikidata_id", "label")


@admin.register(WikidataRedirect)
class WikidataRedirectAdmin(admin.ModelAdmin):
    list_display = ("wikidata_id", "target")
    search_fields = ("wikidata_id", "target__wikidata_id")


@admin.register(ImportOutcome)
class ImportOutcomeAdmin(admin.ModelAdmin):
    list_display = ("wikidata_id", "status", "entity", "attempts", "error", "run", "updated_at")
    list_filter = ("status",)
    search_fields = ("wikidata_id",)


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "requested", "finished")

    @admin.display(description="with an outcome")
    def finished(self, run: ImportRun) -> int:
        return run.finished_now()


@admin.register(RunOutcome)
class RunOutcomeAdmin(admin.ModelAdmin):
    list_display = ("wikidata_id", "run", "status", "origin", "entity", "attempts", "error", "updated_at")
    list_filter = ("status",)
    search_fields = ("wikidata_id",)
    raw_id_fields = ("run", "entity")
