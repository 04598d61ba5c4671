"""``python -m dsplug``: the dsplug command line."""

from .cli import main

raise SystemExit(main())
