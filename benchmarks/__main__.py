"""``python3 -m benchmarks [--quick] [NAME…]``: run every benchmarks/bench_*.py and print
each figure with its reference (measured in the same run), the ratio and the bar."""
from __future__ import annotations

import importlib
import os
import sys
import traceback


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    only = [a for a in argv if not a.startswith("-")]
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(f[:-3] for f in os.listdir(here) if f.startswith("bench_") and f.endswith(".py"))
    print(f"{'figure':48} {'value':>12} {'unit':10} {'reference':>12} {'ratio':>8}  bar")
    for name in names:
        if only and not any(o in name for o in only):
            continue
        try:
            rows = importlib.import_module(f"benchmarks.{name}").run(quick=quick)
        except Exception:
            print(f"{name}: failed\n{traceback.format_exc()}")
            continue
        for r in rows:
            ref = r.get("reference")
            ref_s = f"{ref:12.3f}" if isinstance(ref, (int, float)) else f"{str(ref):>12}"
            print(f"{r['name']:48} {r['value']:12.3f} {r['unit']:10} {ref_s} "
                  f"{r['ratio']:8.2f}  {r['bar']}")
        sys.stdout.flush()
    return 0


sys.exit(main(sys.argv[1:]))
