"""Importing Wikidata's JSON dump: cut into chunks (files), read line by line without parsing
where the line tells (lines), each chunk imported (chunks, storage) by a task method (importer)."""
