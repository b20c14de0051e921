"""``python -m edgeopt``: the same command as ``edgeopt``."""

from edgeopt.cli.main import main

raise SystemExit(main())
