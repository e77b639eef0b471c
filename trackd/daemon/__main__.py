"""Entry point: ``python -m trackd.daemon``."""

from __future__ import annotations

import sys

from ._main import main

sys.exit(main())
