"""Sub-commands of the ``modalrec`` CLI that span several layers (they sit above all of them, beside cli.py)."""
