"""``python3 -m benchmarks [--quick | --long] [--update-baseline] [NAME…]``: run every
benchmarks/bench_*.py and print each figure with its reference (measured in the same run where
there is one), the ratio, the goal (docs/performance.md's table) and the bar.

``--quick`` is the CI mode (smaller tables, well under 60 s): it exits non-zero when a figure
whose reference is measured in the same run (``gate`` in its row: "lower" or "higher" is the
better direction of its ratio) regressed by more than 50 % against the ratio recorded in
benchmarks/baseline.json — never on absolute times, which depend on the machine. A module with
a failing figure is run once more before the run fails (the machine may have been busy).
``--update-baseline`` runs the selected modules three times and records the worst of the three
ratios of each gated figure as the new baseline for its mode (worst: the machine's noise is
in the baseline then, not in a failing CI run). Under ``XFRMD_PURE_PYTHON=1`` (no C
extensions) the modes are ``quick-pure`` and ``full-pure``, with baselines of their own.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import traceback

from netlink_codec import cext

HERE = os.path.dirname(os.path.abspath(__file__))
# $XFRMD_BENCH_BASELINE: another baseline file (the harness's own test uses one)
BASELINE = os.environ.get("XFRMD_BENCH_BASELINE") or os.path.join(HERE, "baseline.json")
TOLERANCE = 1.5          # a ratio 50 % worse than the baseline's fails --quick


def regressed(row: dict, base: float) -> bool:
    """Whether ``row``'s ratio is more than 50 % worse than ``base`` (in its better direction:
    a time ratio 1.5× higher, a throughput ratio below 1/1.5 of it)."""
    if row["gate"] == "lower":
        return row["ratio"] > base * TOLERANCE
    return row["ratio"] < base / TOLERANCE


def _fmt(r: dict) -> str:
    ref = r.get("reference")
    ref_s = f"{ref:12.3f}" if isinstance(ref, (int, float)) else f"{str(ref):>12}"
    return (f"{r['name']:44} {r['value']:12.3f} {r['unit']:10} {ref_s} {r['ratio']:8.2f}  "
            f"{r.get('goal', ''):14} {r['bar']}")


LONG = "--long" in sys.argv     # the modules that take it add their largest points (1M entries)


def _run(name: str, quick: bool) -> list[dict] | None:
    try:
        run = importlib.import_module(f"benchmarks.{name}").run
        if LONG and "long" in inspect.signature(run).parameters:
            return run(quick=quick, long=True)
        return run(quick=quick)
    except Exception:
        print(f"{name}: failed\n{traceback.format_exc()}")
        return None


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    update = "--update-baseline" in argv
    mode = "quick" if quick else "full"
    if cext.pure_python():
        # the C paths (xfrmd/cext.py) make many same-run ratios better: the pure-Python
        # paths are judged against their own baseline (XFRMD_PURE_PYTHON=1 … --update-baseline)
        mode += "-pure"
    only = [a for a in argv if not a.startswith("-")]
    names = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))
    baseline = {}
    if os.path.exists(BASELINE):
        with open(BASELINE) as f:
            baseline = json.load(f)
    base = baseline.get(mode, {})
    print(f"{'figure':44} {'value':>12} {'unit':10} {'reference':>12} {'ratio':>8}  "
          f"{'goal':14} bar")
    failed, measured = [], {}
    for name in names:
        if only and not any(o in name for o in only):
            continue
        rows = _run(name, quick)
        if update and rows is not None:
            for _ in range(2):
                for r2 in _run(name, quick) or []:
                    if r2.get("gate") and r2["name"] in (r["name"] for r in rows):
                        r = next(r for r in rows if r["name"] == r2["name"])
                        if (r2["ratio"] > r["ratio"]) == (r["gate"] == "lower"):
                            r["ratio"] = r2["ratio"]       # keep the worst of the runs
        if rows is None:
            failed.append(f"{name}: raised")
            continue
        bad = [r for r in rows if r.get("gate") and r["name"] in base
               and regressed(r, base[r["name"]])]
        if bad and quick and not update:
            print(f"# {name}: {', '.join(r['name'] for r in bad)} regressed; once more")
            again = _run(name, quick) or []
            worse = {r["name"] for r in again if r.get("gate") and r["name"] in base
                     and regressed(r, base[r["name"]])}
            rows = again if again else rows
            bad = [r for r in rows if r["name"] in worse]
        for r in rows:
            flag = ""
            if r.get("gate") and r["name"] in base:
                flag = f"  [baseline ratio {base[r['name']]:.2f}]"
                if r in bad:
                    flag += " REGRESSED"
                    failed.append(f"{r['name']}: ratio {r['ratio']:.2f} vs baseline "
                                  f"{base[r['name']]:.2f}")
            elif r.get("gate") and not update:
                flag = "  [no baseline: not gated]"      # --update-baseline NAME adds it
            if r.get("gate"):
                measured[r["name"]] = round(r["ratio"], 3)
            print(_fmt(r) + flag)
        sys.stdout.flush()
    if update:
        baseline[mode] = dict(base, **measured)
        with open(BASELINE, "w") as f:
            json.dump(baseline, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"# baseline for {mode} mode written: {len(measured)} ratios")
        return 0
    if failed and quick:
        print("regressions (more than 50 % against the same-run reference):", file=sys.stderr)
        for f in failed:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
