"""``xfrmd ctl`` verbs of the XFRM subsystem."""
from __future__ import annotations

from ..ctl import VERBS, _result, verb

_KEYS = {"proto", "sport", "dport", "policy", "xfrm", "mode", "reqid", "tmpl-src", "tmpl-dst",
         "mark", "mask", "if_id", "priority"}


@verb("acquire", "acquire SRC DST [proto P] [sport N] [dport N] "
                 "[policy INDEX | xfrm esp|ah|comp mode tunnel|transport|beet reqid N "
                 "[tmpl-src A] [tmpl-dst B] [mark V mask M] [if_id N]] — what an outbound "
                 "packet of the flow does: without policy/xfrm, the SPD's best OUT policy")
def _acquire(svc, args) -> int:
    if len(args) < 2 or len(args) % 2:
        raise SystemExit("usage: xfrmd ctl " + VERBS["acquire"][1])
    fields = {"src": args[0], "dst": args[1]}
    for k, v in zip(args[2::2], args[3::2]):
        if k not in _KEYS:
            raise SystemExit(f"xfrmd ctl acquire: unknown keyword {k!r}")
        fields[k.replace("-", "_")] = int(v, 0) if k in ("mark", "mask", "policy", "reqid",
                                                        "if_id", "priority") else v
    return _result(svc.query("acquire", **fields), show=True)


@verb("xfrm-type", "xfrm-type esp|ah|comp on|off — load or unload an xfrm type module")
def _xfrm_type(svc, args) -> int:
    if len(args) != 2:
        raise SystemExit("usage: xfrmd ctl " + VERBS["xfrm-type"][1])
    return _result(svc.query("xfrm_type", proto=args[0], state=args[1]))


@verb("crypto-alg", "crypto-alg on|off NAME… — load or unload crypto algorithms (xfrm_algo.c names)")
def _crypto_alg(svc, args) -> int:
    if len(args) < 2 or args[0] not in ("on", "off"):
        raise SystemExit("usage: xfrmd ctl " + VERBS["crypto-alg"][1])
    return _result(svc.query("crypto_alg", state=args[0], names=args[1:]))
