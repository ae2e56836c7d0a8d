"""``xfrmd suites kselftest|pyroute2|iproute2 [--json] [-t TEST]… [--ipsec-processes N]``:
fetch (once) and run the kernel's net selftests, pyroute2's or iproute2's tests under xfrmd;
one line per test, a summary, exit status 0 (the run itself worked: which tests pass is the
report, not an error). ``xfrmd suites fetch`` fetches all three."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys


def add_suites_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("suites", help="run other projects' test suites unmodified against "
                       "xfrmd (kselftest: the kernel's net selftests)")
    p.add_argument("suite", choices=["kselftest", "pyroute2", "iproute2", "fetch"],
                   help="kselftest, pyroute2, iproute2: run that suite; fetch: only download "
                   "and unpack all three")
    p.add_argument("-t", dest="tests", action="append", metavar="TEST",
                   help="only this test (rtnetlink.sh's name, ipsec.c or bond_ipsec_offload.sh; "
                   "pyroute2's FILE or FILE::TEST as printed; iproute2's ip/DIR/NAME.t); "
                   "repeatable")
    p.add_argument("--json", action="store_true")
    p.add_argument("--ipsec-processes", type=int, default=8, metavar="N",
                   help="run ipsec.c's plan in N processes (its [nr_process] argument; "
                   "default 8, about 2 minutes); 1 is its single-process run, about 17 "
                   "minutes")
    p.set_defaults(fn=run)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fetch_all(runners: dict) -> int:
    failed = 0
    fetchers = [(name, mod.fetch) for name, mod in runners.items()]
    if "kselftest" in runners:      # bond_ipsec_offload.sh: a newer kernel's source
        kselftest = runners["kselftest"]
        fetchers.append(("bond_ipsec_offload.sh", lambda progress: kselftest.fetch(
            progress=progress, source=kselftest.BONDING)))
    for name, fetch in fetchers:
        try:
            print(fetch(progress=_say))
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            _say(f"{name}: could not be fetched: {e}")
            failed = 1
    return failed


def run(args: argparse.Namespace) -> int:
    # start-up time: the runners load only for this command
    from . import iproute2_suite, kselftest, pyroute2_suite
    runners = {"kselftest": kselftest, "pyroute2": pyroute2_suite, "iproute2": iproute2_suite}
    if args.suite == "fetch":
        return _fetch_all(runners)
    mod = runners[args.suite]
    if args.suite != "kselftest":
        results = mod.run_all(mod.fetch(progress=_say), args.tests, progress=_say)
    else:
        if not 1 <= args.ipsec_processes <= 64:
            print("xfrmd suites: --ipsec-processes takes 1 to 64", file=sys.stderr)
            return 2
        selftests = kselftest.fetch(progress=_say)
        try:
            bonding: str | None = kselftest.fetch(progress=_say, source=kselftest.BONDING)
        except (OSError, RuntimeError) as e:
            # the net selftests still run; bond_ipsec_offload.sh's line is missing
            _say(f"kselftest: bond_ipsec_offload.sh could not be fetched ({e}); not run")
            bonding = None
        results = kselftest.run_all(selftests, args.tests, progress=_say,
                                    ipsec_processes=args.ipsec_processes, bonding=bonding)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
        return 0
    for r in results:
        print(f"{r.status:4} {r.name:<28} {r.seconds:5.1f} s  {r.detail}")
    if args.suite == "kselftest":
        counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
        print(f"kselftest: {counts['PASS']} passed, {counts['FAIL']} failed, "
              f"{counts['SKIP']} skipped of {len(results)}")
    else:
        print("\n".join(mod.summary(results)))
    return 0
