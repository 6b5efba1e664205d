"""``python -m ml ...``: see :mod:`ml.cli`."""

from ml.cli import main

raise SystemExit(main())
