"""Sequential (next-item) recommenders: history -> all items, one per file."""
