"""``python -m edge`` is ``auricle``."""

import sys

from edge.cli.main import main

sys.exit(main())
