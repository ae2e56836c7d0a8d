"""``xfrmd ctl VERB …``: each verb becomes one service query to the server.

Each subsystem's verbs sit in a module of this package named after it (``bonding``,
``devices``, ``rtnl``, …) and declared in its ``VERBS`` table; :data:`VERBS` here assembles
them in a fixed order, and ``xfrmd ctl help`` lists them. These modules import nothing of the
kernel model (the subsystems' packages load the whole model on import): a ctl call is a
short-lived client that a scenario script runs dozens of times, and its start-up is the cost
(tests/test_ctl_startup.py, benchmarks/bench_startup.py)."""
from __future__ import annotations

import json
import sys
from typing import Any, cast

from ..ctl_util import Service, VerbTable, done, result, split_json, usage_error
from . import bonding, datapath, devices, genl, kconfig, rtnl, xfrm

_USAGE_NETNS = ("netns add|del NAME [-v|--json] | netns list — add or delete an emulated network "
                "namespace (says so on a terminal or with -v)")


def _netns(svc: Service, args: list[str]) -> int:
    args, how = split_json(args)
    if args[:1] == ["list"]:
        res = svc.query("netns_list")
        if not res.get("errno"):
            print("\n".join(res["namespaces"]))
        return result(res)
    if len(args) != 2 or args[0] not in ("add", "del"):
        raise usage_error(_USAGE_NETNS)
    op, name = args
    return done(svc.query("netns_" + op, name=name), how,
                f"{'added' if op == 'add' else 'deleted'} network namespace {name}",
                {"netns": name, "action": op})


_USAGE_CLOCK = ("clock advance SECONDS [-v|--json] — move the emulated clock on (lifetimes, "
                "timers); says how far and how many timers fired on a terminal or with -v")


def _clock(svc: Service, args: list[str]) -> int:
    args, how = split_json(args)
    if len(args) != 2 or args[0] != "advance":
        raise usage_error(_USAGE_CLOCK)
    try:
        seconds = float(args[1])
    except ValueError:
        raise usage_error(_USAGE_CLOCK) from None
    res = svc.query("clock_advance", seconds=seconds)
    ran = res.get("timers_run", 0)
    ran = ran if isinstance(ran, int) else len(ran)
    return done(res, how,
                f"clock advanced by {seconds:g} s ({ran} timer{'' if ran == 1 else 's'} fired)",
                {"advanced": seconds, "timers_run": ran})


_USAGE_PING = "ping — check that the server answers"


def _ping(svc: Service, args: list[str]) -> int:
    return result(svc.query("ping"), show=True)


FAULT_USAGE = ("fault TYPE ACTION [count N|always] [skip K] [netns NS] [comm NAME] [pid PID] "
               "| fault list [--json] | fault clear [ID] — the next N requests of TYPE "
               "(XFRM_MSG_NEWSA, RTM_NEWLINK, … or any) misbehave; ACTION: fail ERRNO "
               "[extack TEXT] | drop | delay SECONDS | dump-intr | overflow [group G | port P] "
               "(docs/faults.md)")
# keyword → what its value is called in the service request
_FAULT_KEYS = {"count": "count", "skip": "skip", "netns": "netns", "comm": "comm", "pid": "pid",
               "extack": "extack", "group": "group", "port": "port"}


def _fault_request(args: list[str]) -> dict[str, Any]:
    """``TYPE ACTION [ARG] KEY VALUE…`` → the ``fault_add`` request (checked by the server)."""
    if len(args) < 2:
        raise ValueError("needs TYPE and ACTION")
    req = {"type": args[0], "action": args[1]}
    rest = args[2:]
    if args[1] in ("fail", "delay"):
        if not rest or rest[0] in _FAULT_KEYS:
            raise ValueError(f"{args[1]} needs {'ERRNO' if args[1] == 'fail' else 'SECONDS'}")
        req["errno" if args[1] == "fail" else "seconds"] = rest[0]
        rest = rest[1:]
    if len(rest) % 2:
        raise ValueError(f"{rest[-1]!r} needs a value" if rest[-1] in _FAULT_KEYS
                         else f"unexpected {rest[-1]!r}")
    for k, v in zip(rest[::2], rest[1::2]):
        if k not in _FAULT_KEYS:
            raise ValueError(f"unknown keyword {k!r}")
        req[_FAULT_KEYS[k]] = v
    return req


def _fault_line(f: dict[str, Any]) -> str:
    words = [f"{f['id']}: {f['type']} {f['action']}"]
    for k in ("errno", "seconds", "extack", "group", "port", "netns", "comm", "pid", "skip"):
        if k in f:
            v = f[k]
            words.append(json.dumps(v) if k == "extack" else
                         (str(v) if k in ("errno", "seconds") else f"{k} {v}"))
    words.append(f"remaining {f['remaining']} hits {f['hits']}")
    return " ".join(words)


def _fault(svc: Service, args: list[str]) -> int:
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if args[:1] == ["list"] and len(args) == 1:
        res = svc.query("fault_list")
        if not res.get("errno"):
            if as_json:
                print(json.dumps(res["faults"], indent=2))
            else:
                for f in res["faults"]:
                    print(_fault_line(f))
        return result(res)
    if args[:1] == ["clear"] and len(args) <= 2:
        try:
            req = {"id": int(args[1])} if len(args) == 2 else {}
        except ValueError:
            print(f"xfrmd ctl: fault: clear takes a fault id, not {args[1]!r}", file=sys.stderr)
            return 2
        res = svc.query("fault_clear", **req)
        if as_json and not res.get("errno"):
            print(json.dumps({"cleared": res["cleared"]}))
        return result(res)
    try:
        req = _fault_request(args)
    except ValueError as e:
        print(f"xfrmd ctl: fault: {e} (see `xfrmd ctl help`)", file=sys.stderr)
        return 2
    res = svc.query("fault_add", **req)
    if not res.get("errno"):
        print(json.dumps(res["fault"]) if as_json else _fault_line(res["fault"]))
    return result(res)


_USAGE_STATS = ("stats [--json] — what the server counted: datagrams, internal errors "
                "(by the site that raised them), malformed frames, sockets, RSS")


def _stats(svc: Service, args: list[str]) -> int:
    if args not in ([], ["--json"]):
        raise usage_error(_USAGE_STATS)
    res = svc.query("stats")
    if res.get("errno"):
        return result(res)
    res.pop("errno", None)
    if args:
        print(json.dumps(res, indent=2))
    else:
        # start-up time: xfrmd.stats is the server's, and loads logging (≈ 7 ms) with it
        from ..stats import format_stats
        sys.stdout.write(format_stats(res))
    return 0


# The verbs of the server itself (namespaces, clock, faults, counters).
CORE_VERBS: VerbTable = {
    "netns": (_netns, _USAGE_NETNS),
    "clock": (_clock, _USAGE_CLOCK),
    "ping": (_ping, _USAGE_PING),
    "fault": (_fault, FAULT_USAGE),
    "stats": (_stats, _USAGE_STATS),
}
# Each subsystem owns its verbs; the tables in this order (a name in two is a mistake).
VERB_TABLES: tuple[VerbTable, ...] = (CORE_VERBS, xfrm.VERBS, rtnl.VERBS, genl.VERBS,
                                      devices.VERBS, bonding.VERBS, datapath.VERBS, kconfig.VERBS)


def _assemble(tables: tuple[VerbTable, ...]) -> VerbTable:
    verbs: VerbTable = {}
    for table in tables:
        for name, entry in table.items():
            if name in verbs:
                raise ValueError(f"xfrmd ctl: verb {name!r} declared twice")
            verbs[name] = entry
    return verbs


VERBS: VerbTable = _assemble(VERB_TABLES)


def usage(name: str) -> int:
    """``xfrmd ctl VERB --help``: that verb's usage line, without a server."""
    entry = VERBS.get(name)
    if entry is None:
        print(f"xfrmd ctl: unknown verb {name!r} (try `xfrmd ctl help`)", file=sys.stderr)
        return 2
    print(f"usage: xfrmd ctl {entry[1]}")
    return 0


def run_ctl(svc: Service | None, argv: list[str]) -> int:
    """``xfrmd ctl ARGV``: the verb named by ``argv[0]`` (``svc`` None: only ``help``)."""
    if not argv or argv[0] in ("help", "-h", "--help"):
        print("xfrmd ctl verbs:")
        for name, (_, line) in sorted(VERBS.items()):
            print(f"  {line}")
        print("Verbs that change the emulated machine need the server's owner or root "
              "(docs/security.md).")
        return 0
    entry = VERBS.get(argv[0])
    if entry is None:
        print(f"xfrmd ctl: unknown verb {argv[0]!r} (try `xfrmd ctl help`)", file=sys.stderr)
        return 2
    return entry[0](cast(Service, svc), argv[1:])   # only help runs without a server
