"""``python -m xborder`` is the ``xborder`` command."""

from xborder.cli import main

raise SystemExit(main())
