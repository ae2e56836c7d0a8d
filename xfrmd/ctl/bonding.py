"""``xfrmd ctl lag-model BOND off|replicated|shared [--notify-flush on|off]
[--require GUARANTEES|none]``."""
from __future__ import annotations

from xfrmd.ctl_util import Service, VerbTable, done, split_json, usage_error


def _lag_model(svc: Service, args: list[str]) -> int:
    args, how = split_json(args)
    req: dict[str, object] = {}
    while len(args) >= 4 and args[-2] in ("--notify-flush", "--require"):
        opt, value = args[-2], args[-1]
        if opt == "--notify-flush":
            if value not in ("on", "off") or "notify_flush" in req:
                raise usage_error(_USAGE_LAG_MODEL)
            req["notify_flush"] = value == "on"
        else:
            if "require" in req:
                raise usage_error(_USAGE_LAG_MODEL)
            req["require"] = value          # the words are checked by the kernel side
        args = args[:-2]
    if len(args) != 2:
        raise usage_error(_USAGE_LAG_MODEL)
    what = {"bond": args[0], "lag_model": args[1], **req}
    line = f"{args[0]}: LAG offload model {args[1]}"
    if "notify_flush" in req:
        line += f", DELSA on LAG flush {'on' if req['notify_flush'] else 'off'}"
    if "require" in req:
        line += f", requiring {req['require']}"
    return done(svc.query("lag_model", bond=args[0], model=args[1], **req), how, line, what)


# what `xfrmd ctl help` shows of each verb
_USAGE_LAG_MODEL = ("lag-model BOND off|replicated|shared [--notify-flush on|off] "
                    "[--require tx-seq,rx-replay|none] [-v|--json] "
                    "— the bond's IPsec offload model; --notify-flush: XFRM_MSG_DELSA for "
                    "states a LAG flush deletes (the kernel sends none); --require: admit a LAG "
                    "state only on slaves whose drivers declare these guarantees (the review's "
                    "proposal, not a kernel ABI); says what it set on a terminal or with -v")

# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "lag-model": (_lag_model, _USAGE_LAG_MODEL),
}
