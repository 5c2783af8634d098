"""Importers for the released Divot checkpoints (reference key names -> this toolkit's modules)."""
