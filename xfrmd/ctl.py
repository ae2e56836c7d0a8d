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


@verb("netns", "netns add|del NAME | netns list")
def _netns(svc, args) -> int:
    if args[:1] == ["list"]:
        res = svc.query("netns_list")
        if not res.get("errno"):
            print("\n".join(res["namespaces"]))
        return _result(res)
    if len(args) != 2 or args[0] not in ("add", "del"):
        raise SystemExit("usage: xfrmd ctl " + VERBS["netns"][1])
    return _result(svc.query("netns_" + args[0], name=args[1]))


@verb("clock", "clock advance SECONDS")
def _clock(svc, args) -> int:
    if len(args) != 2 or args[0] != "advance":
        raise SystemExit("usage: xfrmd ctl " + VERBS["clock"][1])
    return _result(svc.query("clock_advance", seconds=float(args[1])))


@verb("ping", "ping — check that the server answers")
def _ping(svc, args) -> int:
    return _result(svc.query("ping"), show=True)


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
