"""``python -m retreg.cli`` runs the ``retreg`` command line."""
from retreg.cli import cli

cli()
