"""The review's proposal as an admission rule (xfrmd's, not a kernel ABI): a bond switched
on with ``xfrmd ctl lag-model BOND replicated --require tx-seq,rx-replay`` (or the topology's
``lag_require``) offloads a LAG state only where every running slave's driver declares the
required guarantees (``XfrmDevOps.lag_guarantees``) and every pair of them shares one
context, which only ``xdo_dev_state_lag_compatible`` both ways can tell. The RFC reply's
``XFRMDEV_OPS_F_LAG_SHARED_TX_SEQ`` / ``_RX_REPLAY`` are the guarantees' "only
illustrative" names (docs/bonding.md)."""
from __future__ import annotations

import errno as E
from typing import Iterable

from devices.xfrmdev import LAG_GUARANTEES

from .common import Bonding, Device, compatible, ops_of, refuse


def lag_require_words(text: str | Iterable[str]) -> tuple[str, ...]:
    """The guarantees ``text`` names (``"tx-seq,rx-replay"``, ``"none"`` or a list), in
    LAG_GUARANTEES order; ValueError naming the word and the allowed ones."""
    words = [w.strip() for w in (text.split(",") if isinstance(text, str) else text)]
    if isinstance(text, str) and words == ["none"]:
        return ()
    for w in words:
        if w not in LAG_GUARANTEES:
            alone = ", or none" if isinstance(text, str) else ""
            raise ValueError(f"{w!r} is not a guarantee any driver declares "
                             f"(allowed: {', '.join(LAG_GUARANTEES)}{alone})")
    return tuple(g for g in LAG_GUARANTEES if g in words)


def _shares(a: Device, b: Device) -> bool:
    """One context for ``a`` and ``b``: both drivers have ``xdo_dev_state_lag_compatible``
    and it holds both ways; nothing else (no "same driver" guess)."""
    oa, ob = ops_of(a), ops_of(b)
    return bool(oa is not None and ob is not None and oa.has_lag_compatible
                and ob.has_lag_compatible and compatible(a, b))


def lag_require_problem(bond: Bonding, slaves: list[Device]) -> str | None:
    """Why ``slaves`` do not give the bond's required guarantees — the first slave and the
    first guarantee missing — or None."""
    need = getattr(bond, "lag_require", ())
    if not need or not slaves:
        return None
    for s in slaves:
        ops = ops_of(s)
        declared = ops.lag_guarantees if ops is not None else frozenset()
        for g in need:
            if g not in declared:
                return f"slave {s.name}: no {g}"
    first = slaves[0]
    for s in slaves[1:]:
        if not _shares(first, s):
            return f"slave {s.name}: {need[0]} not shared with {first.name}"
    return None


def lag_require_check(bond: Bonding, slaves: list[Device]) -> None:
    """At SA add, before any slave is touched: EOPNOTSUPP with the slave and the missing
    guarantee, so nothing is installed and nothing needs rolling back."""
    why = lag_require_problem(bond, slaves)
    if why:
        refuse(f"Not all slaves give the required LAG guarantees ({why})", E.EOPNOTSUPP)
