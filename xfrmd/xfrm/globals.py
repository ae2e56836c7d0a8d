"""What the XFRM subsystem keeps for a whole kernel (the statics of net/xfrm/), in the
kernel's ``drivers`` table under ``"xfrm"``: made by the subsystem's init call, so two kernels
in one process share nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ..kernel import Kernel

KEY = "xfrm"


class XfrmGlobals:
    __slots__ = ("acqseq", "unavailable_algos")

    def __init__(self) -> None:
        self.acqseq = 0             # xfrm_get_acqseq's counter
        # crypto algorithms this kernel lacks (``xfrmd ctl crypto-alg off NAME``)
        self.unavailable_algos: frozenset[str] = frozenset()


def xfrm_globals(kernel: Kernel) -> XfrmGlobals:
    return cast(XfrmGlobals, kernel.drivers[KEY])
