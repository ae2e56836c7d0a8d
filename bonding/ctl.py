"""``xfrmd ctl lag-model BOND off|replicated|shared [--notify-flush on|off]``."""
from __future__ import annotations

from xfrmd.ctl import VERBS, _result, verb


@verb("lag-model", "lag-model BOND off|replicated|shared [--notify-flush on|off] — the bond's "
                   "IPsec offload model; --notify-flush: XFRM_MSG_DELSA for states a LAG "
                   "flush deletes (the kernel sends none)")
def _lag_model(svc, args) -> int:
    req = {}
    if len(args) == 4 and args[2] == "--notify-flush" and args[3] in ("on", "off"):
        req["notify_flush"] = args[3] == "on"
        args = args[:2]
    if len(args) != 2:
        raise SystemExit("usage: xfrmd ctl " + VERBS["lag-model"][1])
    return _result(svc.query("lag_model", bond=args[0], model=args[1], **req))
