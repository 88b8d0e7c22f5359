"""``python -m include.governance``: the reviewer's command line (see ``cli.py``)."""

from include.governance.cli import main

raise SystemExit(main())
