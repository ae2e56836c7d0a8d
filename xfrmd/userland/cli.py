"""``xfrmd userland build NAME… | list | path NAME | remove NAME``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from . import (KNOWN, Userland, UserlandError, built, cache_dir, is_current, known, resolve,
               tool_versions)

# Start-up time: the builder (debootstrap driving, threads, dates: about 10 ms) loads for
# `build` and `remove` only, not for every `xfrmd` command that registers this parser.


def add_userland_parser(sub: Any) -> None:
    p = sub.add_parser("userland", help="build and list cached Debian userlands (newer ip, "
                                        "charon, pluto) for `xfrmd run --userland`")
    verbs = p.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("build", help="build (or keep, if current) userlands: "
                                       + ", ".join(KNOWN))
    b.add_argument("names", nargs="+", metavar="NAME")
    b.add_argument("--mirror", help="Debian mirror URL (default: the one apt's sources name)")
    b.add_argument("--force", action="store_true", help="rebuild even if current")
    b.set_defaults(fn=cmd_build)
    verbs.add_parser("list", help="what is built, with the versions of its tools") \
        .set_defaults(fn=cmd_list)
    pa = verbs.add_parser("path", help="print a built userland's root directory")
    pa.add_argument("name")
    pa.set_defaults(fn=cmd_path)
    r = verbs.add_parser("remove", help="remove a built userland from the cache")
    r.add_argument("name")
    r.set_defaults(fn=cmd_remove)


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build                # start-up time (top of the file)
    try:
        uls = [known(n) for n in args.names]
        for ul in uls:
            was_current = not args.force and _current(ul)
            root = build(ul, mirror=args.mirror, force=args.force)
            state = "up to date" if was_current else "built"
            versions = "  ".join(f"{k} {v}" for k, v in tool_versions(root).items())
            print(f"{ul.name}: {state}: {versions}  {root}")
    except UserlandError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def _current(ul: Userland) -> bool:
    return is_current(ul)


def cmd_list(args: argparse.Namespace) -> int:
    rows = built()
    if not rows:
        print(f"xfrmd userland: none built in {cache_dir()} (known: {', '.join(KNOWN)}; "
              "build one with `xfrmd userland build NAME`)", file=sys.stderr)
        return 0
    for name, root, stamp in rows:
        versions = "  ".join(f"{k} {v}" for k, v in tool_versions(root).items())
        notes = []
        if stamp:
            notes.append(f"{stamp.get('bytes', 0) / 1e6:.0f} MB")
            notes.append(f"built {stamp.get('built', '?')}")
        if name in KNOWN and (not stamp or stamp.get("key") != KNOWN[name].key):
            notes.append("stale: its package list changed, `xfrmd userland build "
                         f"{name}` rebuilds it")
        print(f"{name:<20} {versions}  ({', '.join(notes)})  {root}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    try:
        print(resolve(args.name))
    except UserlandError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from .build import remove_tree          # start-up time (top of the file)
    try:
        ul = known(args.name)
        if not os.path.lexists(ul.path):
            print(f"xfrmd userland: {ul.name} is not built", file=sys.stderr)
            return 1
        remove_tree(ul.path)
    except UserlandError as e:
        print(e, file=sys.stderr)
        return 1
    return 0
