"""The uapi numbers of include/uapi/linux/xfrm.h as plain ints: ``A.TMPL`` is XFRMA_TMPL,
``M.NEWSA`` XFRM_MSG_NEWSA, ``G.SA`` XFRMNLGRP_SA.

The codec declares them as IntEnums (names for traces and pretty-printing); reading a member
of an IntEnum class costs three times a plain attribute (≈ 75 ns against 25 on CPython 3.11),
and one NEWSA or NEWPOLICY reads dozens of them (docs/performance.md)."""
from __future__ import annotations

from types import SimpleNamespace

from netlink_codec import xfrm as X

A = SimpleNamespace(**{m.name: int(m) for m in X.Xfrma})
M = SimpleNamespace(**{m.name: int(m) for m in X.XfrmMsg})
G = SimpleNamespace(**{m.name: int(m) for m in X.XfrmNlGrp})
