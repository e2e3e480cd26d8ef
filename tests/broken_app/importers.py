"""A broken importers module: importing it raises."""

raise ImportError("this importers module is broken on purpose")
