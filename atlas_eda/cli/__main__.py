"""``python -m atlas_eda.cli``: the ``atlas-eda`` command."""

import sys

from . import main

sys.exit(main())
