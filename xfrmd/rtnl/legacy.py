"""Transitional: the ``@rtnl_handler`` decorator for the modules that do not yet declare a
handler table (link.py, bridge.py, netns.py). It fills the module-level tables below at
import; :func:`xfrmd.rtnl.init` copies them into the kernel's :class:`~xfrmd.rtnl.Rtnetlink`
after the declared tables. Deleted once those modules declare ``RTNL_MSG_HANDLERS``."""
from __future__ import annotations

from typing import Any, Callable

Handler = Callable[..., Any]

DOIT: dict[int, Handler] = {}
DUMPIT: dict[int, Handler] = {}
# handlers one family registered for itself (rtnl_register(PF_BRIDGE, …)), looked up first
FAMILY_DOIT: dict[tuple[int, int], Handler] = {}
FAMILY_DUMPIT: dict[tuple[int, int], Handler] = {}


def rtnl_handler(msg_type: int, *, dump: bool = False,
                 family: int = 0) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if family:
            (FAMILY_DUMPIT if dump else FAMILY_DOIT)[(family, msg_type)] = fn
        else:
            (DUMPIT if dump else DOIT)[msg_type] = fn
        return fn
    return register


def handlers() -> list[tuple[int, int, Handler | None, Handler | None]]:
    """What the decorator registered, as (family, msgtype, doit, dumpit) rows."""
    rows: list[tuple[int, int, Handler | None, Handler | None]] = []
    rows += [(0, t, fn, None) for t, fn in DOIT.items()]
    rows += [(0, t, None, fn) for t, fn in DUMPIT.items()]
    rows += [(f, t, fn, None) for (f, t), fn in FAMILY_DOIT.items()]
    rows += [(f, t, None, fn) for (f, t), fn in FAMILY_DUMPIT.items()]
    return rows
