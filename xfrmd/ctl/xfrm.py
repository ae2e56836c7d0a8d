"""``xfrmd ctl`` verbs of the XFRM subsystem."""
from __future__ import annotations

from typing import Any

from ..ctl_util import Service, VerbTable, result, usage_error

_KEYS = {"proto", "sport", "dport", "policy", "xfrm", "mode", "reqid", "tmpl-src", "tmpl-dst",
         "mark", "mask", "if_id", "priority"}


def _acquire(svc: Service, args: list[str]) -> int:
    if len(args) < 2 or len(args) % 2:
        raise usage_error(_USAGE_ACQUIRE)
    fields: dict[str, Any] = {"src": args[0], "dst": args[1]}
    for k, v in zip(args[2::2], args[3::2]):
        if k not in _KEYS:
            raise SystemExit(f"xfrmd ctl acquire: unknown keyword {k!r}")
        fields[k.replace("-", "_")] = int(v, 0) if k in ("mark", "mask", "policy", "reqid",
                                                        "if_id", "priority") else v
    return result(svc.query("acquire", **fields), show=True)


def _xfrm_type(svc: Service, args: list[str]) -> int:
    if len(args) != 2:
        raise usage_error(_USAGE_XFRM_TYPE)
    return result(svc.query("xfrm_type", proto=args[0], state=args[1]))


def _crypto_alg(svc: Service, args: list[str]) -> int:
    if len(args) < 2 or args[0] not in ("on", "off"):
        raise usage_error(_USAGE_CRYPTO_ALG)
    return result(svc.query("crypto_alg", state=args[0], names=args[1:]))


# what `xfrmd ctl help` shows of each verb
_USAGE_ACQUIRE = ("acquire SRC DST [proto P] [sport N] [dport N] "
                  "[policy INDEX | xfrm esp|ah|comp mode tunnel|transport|beet reqid N "
                  "[tmpl-src A] [tmpl-dst B] [mark V mask M] [if_id N]] — what an outbound "
                  "packet of the flow does: without policy/xfrm, the SPD's best OUT policy")
_USAGE_XFRM_TYPE = "xfrm-type esp|ah|comp on|off — load or unload an xfrm type module"
_USAGE_CRYPTO_ALG = "crypto-alg on|off NAME… — load or unload crypto algorithms (xfrm_algo.c names)"

# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "acquire": (_acquire, _USAGE_ACQUIRE),
    "xfrm-type": (_xfrm_type, _USAGE_XFRM_TYPE),
    "crypto-alg": (_crypto_alg, _USAGE_CRYPTO_ALG),
}
