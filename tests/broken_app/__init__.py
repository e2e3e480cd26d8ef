"""An app whose importers module is broken, to show that discovery fails loudly."""
