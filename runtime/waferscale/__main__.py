"""``python -m waferscale`` is the ``waferscale`` command."""

from waferscale.cli import main

raise SystemExit(main())
