"""Fault tests with real processes: workers, brokers, the stand-in Wikidata and the test database."""
