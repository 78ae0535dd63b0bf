"""``python -m glsverify`` runs the CLI."""

from glsverify.cli import main

main()
