"""The C extensions of xfrmd's hot paths (netlink_codec/cext.py says how they are found,
built and loaded; docs/performance.md why they exist).

``python3 -m xfrmd.cext build``   compile every one for this interpreter (the README's
                                   install commands run it)
``python3 -m xfrmd.cext status``  which are built, and which path each hot path runs

Each entry: the extension's dotted name and its C source, next to the Python module whose
hot path it replaces (that module keeps the pure-Python version: ``XFRMD_PURE_PYTHON=1``).
A source's local headers (``#include "…"``, e.g. ``_slots.h``) are part of its build key.
"""
from __future__ import annotations

import os
import sys

from netlink_codec import cext

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# dotted name -> source, relative to the checkout / site-packages
EXTENSIONS: dict[str, str] = {
    "xfrmd.datapath._espfast": "xfrmd/datapath/_espfast.c",
    "xfrmd.xfrm._safast": "xfrmd/xfrm/_safast.c",    # NEWSA/UPDSA: sa_verify.checked_newsa_info
    "xfrmd.xfrm._sacons": "xfrmd/xfrm/_sacons.c",    # NEWSA/UPDSA: sa_verify.fast_state
    "xfrmd.xfrm._sadump": "xfrmd/xfrm/_sadump.c",    # dump_one_state: state.dump_message
    "xfrmd.xfrm._spitab": "xfrmd/xfrm/_spitab.c",    # the SAD's byspi: sadb.StateDb (a dict)
    "xfrmd.xfrm._poldump": "xfrmd/xfrm/_poldump.c",  # dump_one_policy: policy.dump_message
    "xfrmd.xfrm._polfast": "xfrmd/xfrm/_polfast.c",  # NEWPOLICY/UPDPOLICY: spd.xfrm_add_policy
    "netlink_codec._nlfast": "netlink_codec/_nlfast.c",
    "xfrmd.netlink._rcvfast": "xfrmd/netlink/_rcvfast.c",  # an XFRM request: Kernel.deliver
    "xfrmd._hugeheap": "xfrmd/_hugeheap.c",          # pymalloc's arenas on huge pages: hugeheap
    "xfrmd._transport": "xfrmd/_transport.c",        # the reactor round: server._reactor_py
    "xfrmd.netlink._reopen": "xfrmd/netlink/_reopen.c",  # the `ip -batch` line: Kernel.reopen
    "xfrmd._taprec": "xfrmd/_taprec.c",              # the trace tap: trace_tap._record
}


def source(name: str) -> str:
    return os.path.join(_ROOT, EXTENSIONS[name])


def build_all(out_dir: str | None = None) -> list[str]:
    return [cext.build(name, source(name), out_dir) for name in EXTENSIONS]


def status() -> list[tuple[str, str | None]]:
    """(name, built file or None) for each extension."""
    return [(name, cext.find(name, source(name))) for name in EXTENSIONS]


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        try:
            for path in build_all():
                print(path)
        except cext.BuildError as e:
            print(f"xfrmd: the C speedups were not built ({e}); the pure-Python paths run",
                  file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["status"]:
        pure = cext.pure_python()
        for name, path in status():
            how = ("pure Python (XFRMD_PURE_PYTHON)" if pure else
                   "C" if path else "pure Python (not built: python3 -m xfrmd.cext build)")
            print(f"{name}: {how}{'' if not path else ' ' + path}")
        return 0
    print("usage: python3 -m xfrmd.cext build|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
