"""``python -m rnnkit`` is the ``rnnkit`` command."""

import sys

from . import main

sys.exit(main())
