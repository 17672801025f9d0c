"""`python -m bsmamba2_plugin.cli`: the `bsmamba2` command (recipes run it this way)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
