"""The uapi numbers of include/uapi/linux/xfrm.h as plain ints: ``A.TMPL`` is XFRMA_TMPL,
``M.NEWSA`` XFRM_MSG_NEWSA, ``G.SA`` XFRMNLGRP_SA.

The codec declares them as IntEnums (names for traces and pretty-printing); reading a member
of an IntEnum class costs three times a plain attribute (≈ 75 ns against 25 on CPython 3.11),
and one NEWSA or NEWPOLICY reads dozens of them (docs/performance.md). Each table is a module
object: CPython 3.11 specializes an attribute read of a module (≈ 12 ns) but not of a
SimpleNamespace (≈ 80 ns, as slow as a class attribute read through an instance)."""
from __future__ import annotations

from enum import IntEnum
from types import ModuleType

from netlink_codec import xfrm as X


def _table(name: str, enum: type[IntEnum]) -> ModuleType:
    table = ModuleType(f"{__name__}.{name}")
    table.__dict__.update({m.name: int(m) for m in enum})
    return table


A = _table("A", X.Xfrma)
M = _table("M", X.XfrmMsg)
G = _table("G", X.XfrmNlGrp)
