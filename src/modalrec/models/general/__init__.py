"""General (collaborative-filtering) recommenders: user -> all items, one per file."""
