"""``python -m headcoop.cli``: the same as the ``headcoop`` command."""

import sys

from headcoop.cli import main

sys.exit(main())
