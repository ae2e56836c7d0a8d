"""``xfrmd ctl lag-model BOND off|replicated|shared``."""
from __future__ import annotations

from xfrmd.ctl import VERBS, _result, verb


@verb("lag-model", "lag-model BOND off|replicated|shared — the bond's IPsec offload model")
def _lag_model(svc, args) -> int:
    if len(args) != 2:
        raise SystemExit("usage: xfrmd ctl " + VERBS["lag-model"][1])
    return _result(svc.query("lag_model", bond=args[0], model=args[1]))
