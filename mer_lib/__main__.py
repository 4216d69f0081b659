"""``python -m mer_lib``: see :mod:`mer_lib.cli`."""
from .cli import main

raise SystemExit(main())
