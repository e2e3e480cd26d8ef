"""Importers shipped with the project: Wikidata."""
