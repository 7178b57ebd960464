"""``python -m app.cli``: the same as the ``mvct-guide`` command."""

import sys

from app.cli import main

sys.exit(main())
