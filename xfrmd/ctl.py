"""``xfrmd ctl VERB …``: each verb becomes one service query to the server.

Verbs are registered with :func:`verb`; ``xfrmd ctl help`` lists them."""
from __future__ import annotations

import json
import sys
from typing import Callable

VERBS: dict[str, tuple[Callable, str]] = {}


def verb(name: str, usage: str):
    def register(fn):
        VERBS[name] = (fn, usage)
        return fn
    return register


def _result(res: dict, show: bool = False) -> int:
    if res.get("errno"):
        print(f"xfrmd ctl: {res.get('error') or res['errno']}", file=sys.stderr)
        return 1
    if show:
        out = {k: v for k, v in res.items() if k != "errno"}
        if "text" in out:
            print(out["text"], end="" if out["text"].endswith("\n") else "\n")
        elif out:
            print(json.dumps(out, indent=2))
    return 0


def split_json(args: list[str]) -> tuple[list[str], bool | None]:
    """``args`` without ``--json`` / ``-v`` / ``--verbose``, and how to report: True (JSON),
    False (one line), None (one line only when stdout is a terminal)."""
    how = None
    if "-v" in args or "--verbose" in args:
        how = False
    if "--json" in args:
        how = True
    return [a for a in args if a not in ("--json", "-v", "--verbose")], how


def done(res: dict, how: bool | None, line: str, what: dict) -> int:
    """A state-changing verb's answer: on success one line saying what it did, or ``what``
    as one JSON object with ``--json``. Without either flag the line goes to a terminal only:
    scripts that capture ``xfrmd ctl`` output around these verbs (as with ``ip``, which is
    silent on success) keep reading what they read before. Errors as :func:`_result`."""
    if res.get("errno"):
        return _result(res)
    if how is True:
        print(json.dumps(what))
    elif how is False or sys.stdout.isatty():
        print(line)
    return 0


@verb("netns", "netns add|del NAME [-v|--json] | netns list — add or delete an emulated network "
               "namespace (says so on a terminal or with -v)")
def _netns(svc, args) -> int:
    args, how = split_json(args)
    if args[:1] == ["list"]:
        res = svc.query("netns_list")
        if not res.get("errno"):
            print("\n".join(res["namespaces"]))
        return _result(res)
    if len(args) != 2 or args[0] not in ("add", "del"):
        raise SystemExit("usage: xfrmd ctl " + VERBS["netns"][1])
    op, name = args
    return done(svc.query("netns_" + op, name=name), how,
                f"{'added' if op == 'add' else 'deleted'} network namespace {name}",
                {"netns": name, "action": op})


@verb("clock", "clock advance SECONDS [-v|--json] — move the emulated clock on (lifetimes, "
               "timers); says how far and how many timers fired on a terminal or with -v")
def _clock(svc, args) -> int:
    args, how = split_json(args)
    if len(args) != 2 or args[0] != "advance":
        raise SystemExit("usage: xfrmd ctl " + VERBS["clock"][1])
    try:
        seconds = float(args[1])
    except ValueError:
        raise SystemExit("usage: xfrmd ctl " + VERBS["clock"][1]) from None
    res = svc.query("clock_advance", seconds=seconds)
    ran = res.get("timers_run", 0)
    ran = ran if isinstance(ran, int) else len(ran)
    return done(res, how,
                f"clock advanced by {seconds:g} s ({ran} timer{'' if ran == 1 else 's'} fired)",
                {"advanced": seconds, "timers_run": ran})


@verb("ping", "ping — check that the server answers")
def _ping(svc, args) -> int:
    return _result(svc.query("ping"), show=True)


FAULT_USAGE = ("fault TYPE ACTION [count N|always] [skip K] [netns NS] [comm NAME] [pid PID] "
               "| fault list [--json] | fault clear [ID] — the next N requests of TYPE "
               "(XFRM_MSG_NEWSA, RTM_NEWLINK, … or any) misbehave; ACTION: fail ERRNO "
               "[extack TEXT] | drop | delay SECONDS | dump-intr | overflow [group G | port P] "
               "(docs/faults.md)")
# keyword → what its value is called in the service request
_FAULT_KEYS = {"count": "count", "skip": "skip", "netns": "netns", "comm": "comm", "pid": "pid",
               "extack": "extack", "group": "group", "port": "port"}


def _fault_request(args: list[str]) -> dict:
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


def _fault_line(f: dict) -> str:
    words = [f"{f['id']}: {f['type']} {f['action']}"]
    for k in ("errno", "seconds", "extack", "group", "port", "netns", "comm", "pid", "skip"):
        if k in f:
            v = f[k]
            words.append(json.dumps(v) if k == "extack" else
                         (str(v) if k in ("errno", "seconds") else f"{k} {v}"))
    words.append(f"remaining {f['remaining']} hits {f['hits']}")
    return " ".join(words)


@verb("fault", FAULT_USAGE)
def _fault(svc, args) -> int:
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
        return _result(res)
    if args[:1] == ["clear"] and len(args) <= 2:
        try:
            req = {"id": int(args[1])} if len(args) == 2 else {}
        except ValueError:
            print(f"xfrmd ctl: fault: clear takes a fault id, not {args[1]!r}", file=sys.stderr)
            return 2
        res = svc.query("fault_clear", **req)
        if as_json and not res.get("errno"):
            print(json.dumps({"cleared": res["cleared"]}))
        return _result(res)
    try:
        req = _fault_request(args)
    except ValueError as e:
        print(f"xfrmd ctl: fault: {e} (see `xfrmd ctl help`)", file=sys.stderr)
        return 2
    res = svc.query("fault_add", **req)
    if not res.get("errno"):
        print(json.dumps(res["fault"]) if as_json else _fault_line(res["fault"]))
    return _result(res)


# Modules that register more verbs on import (each subsystem owns its verbs).
VERB_MODULES = ["xfrmd.xfrm.ctl", "xfrmd.rtnl.ctl", "xfrmd.genl.ctl", "devices.ctl", "bonding.ctl",
                "xfrmd.datapath.ctl", "xfrmd.kconfig_ctl",
                "xfrmd.stats"]


def _load_verbs() -> None:
    import importlib
    for name in VERB_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if e.name != name and not name.startswith(f"{e.name}."):  # absent package too
                raise


def usage(name: str) -> int:
    """``xfrmd ctl VERB --help``: that verb's usage line, without a server."""
    _load_verbs()
    entry = VERBS.get(name)
    if entry is None:
        print(f"xfrmd ctl: unknown verb {name!r} (try `xfrmd ctl help`)", file=sys.stderr)
        return 2
    print(f"usage: xfrmd ctl {entry[1]}")
    return 0


def run_ctl(svc, argv: list[str]) -> int:
    _load_verbs()
    if not argv or argv[0] in ("help", "-h", "--help"):
        print("xfrmd ctl verbs:")
        for name, (_, usage) in sorted(VERBS.items()):
            print(f"  {usage}")
        print("Verbs that change the emulated machine need the server's owner or root "
              "(docs/security.md).")
        return 0
    entry = VERBS.get(argv[0])
    if entry is None:
        print(f"xfrmd ctl: unknown verb {argv[0]!r} (try `xfrmd ctl help`)", file=sys.stderr)
        return 2
    return entry[0](svc, argv[1:])
