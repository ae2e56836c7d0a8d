"""``xfrmd suites kselftest [--json] [-t TEST]… [--ipsec-processes N]``: fetch (once) and run the kernel's net
selftests under xfrmd; one line per test, a summary, exit status 0 (the run itself worked:
which tests pass is the report, not an error)."""
from __future__ import annotations

import argparse
import json
import sys


def add_suites_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("suites", help="run other projects' test suites unmodified against "
                       "xfrmd (kselftest: the kernel's net selftests)")
    p.add_argument("suite", choices=["kselftest", "fetch"],
                   help="kselftest: run them; fetch: only download and unpack them")
    p.add_argument("-t", dest="tests", action="append", metavar="TEST",
                   help="only this test (rtnetlink.sh's name, ipsec.c or "
                   "bond_ipsec_offload.sh); repeatable")
    p.add_argument("--json", action="store_true")
    p.add_argument("--ipsec-processes", type=int, default=8, metavar="N",
                   help="run ipsec.c's plan in N processes (its [nr_process] argument; "
                   "default 8, about 2 minutes); 1 is its single-process run, about 17 "
                   "minutes")
    p.set_defaults(fn=run)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # start-up time: the runner loads only for this command
    from . import kselftest
    selftests = kselftest.fetch(progress=_say)
    try:
        bonding: str | None = kselftest.fetch(progress=_say, source=kselftest.BONDING)
    except (OSError, RuntimeError) as e:
        if args.suite == "fetch":
            raise
        # the net selftests still run; bond_ipsec_offload.sh's line is missing
        _say(f"kselftest: bond_ipsec_offload.sh could not be fetched ({e}); not run")
        bonding = None
    if args.suite == "fetch":
        print(selftests)
        print(bonding)
        return 0
    if not 1 <= args.ipsec_processes <= 64:
        print("xfrmd suites: --ipsec-processes takes 1 to 64", file=sys.stderr)
        return 2
    results = kselftest.run_all(selftests, args.tests, progress=_say,
                                ipsec_processes=args.ipsec_processes, bonding=bonding)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.status:4} {r.name:<28} {r.seconds:5.1f} s  {r.detail}")
        counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
        print(f"kselftest: {counts['PASS']} passed, {counts['FAIL']} failed, "
              f"{counts['SKIP']} skipped of {len(results)}")
    return 0
