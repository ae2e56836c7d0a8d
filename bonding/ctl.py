"""``xfrmd ctl lag-model BOND off|replicated|shared [--notify-flush on|off]``."""
from __future__ import annotations

from xfrmd.ctl_util import Service, VerbTable, done, split_json, usage_error


def _lag_model(svc: Service, args: list[str]) -> int:
    args, how = split_json(args)
    req = {}
    if len(args) == 4 and args[2] == "--notify-flush" and args[3] in ("on", "off"):
        req["notify_flush"] = args[3] == "on"
        args = args[:2]
    if len(args) != 2:
        raise usage_error(_USAGE_LAG_MODEL)
    what = {"bond": args[0], "lag_model": args[1], **req}
    line = f"{args[0]}: LAG offload model {args[1]}"
    if "notify_flush" in req:
        line += f", DELSA on LAG flush {'on' if req['notify_flush'] else 'off'}"
    return done(svc.query("lag_model", bond=args[0], model=args[1], **req), how, line, what)


# what `xfrmd ctl help` shows of each verb
_USAGE_LAG_MODEL = ("lag-model BOND off|replicated|shared [--notify-flush on|off] [-v|--json] "
                    "— the bond's IPsec offload model; --notify-flush: XFRM_MSG_DELSA for "
                    "states a LAG flush deletes (the kernel sends none); says what it set on a "
                    "terminal or with -v")

# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "lag-model": (_lag_model, _USAGE_LAG_MODEL),
}
