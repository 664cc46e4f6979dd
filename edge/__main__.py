"""``python -m edge`` is ``auricle``."""

import sys

from edge.cli import main

sys.exit(main())
