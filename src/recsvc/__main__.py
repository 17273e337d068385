"""``python -m recsvc`` runs the ``recsvc`` command."""

import sys

from recsvc.cli import main

sys.exit(main())
