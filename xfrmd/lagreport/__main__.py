"""``python3 -m xfrmd.lagreport`` = ``xfrmd lag-report``."""
from __future__ import annotations

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
