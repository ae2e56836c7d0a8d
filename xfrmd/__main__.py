"""``python3 -m xfrmd …``: the same entry point as the ``xfrmd`` console script
(pyproject.toml [project.scripts] xfrmd = "xfrmd.cli:main")."""
from __future__ import annotations

import sys

from xfrmd.cli import main

if __name__ == "__main__":
    sys.exit(main())
