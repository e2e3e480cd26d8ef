"""An installed app for the tests: its importers are discovered like any app's."""
