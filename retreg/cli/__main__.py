"""``python -m retreg.cli`` runs the ``retreg`` command line."""
import sys

from retreg.cli import main

sys.exit(main())
