"""``python -m modalrec`` (and ``torchrun -m modalrec``) run the CLI."""

from modalrec.cli import main

main()
