"""``python -m trackd``: the ``trackd`` command, for an environment whose scripts folder is not on PATH."""

from trackd.cli import main

raise SystemExit(main())
