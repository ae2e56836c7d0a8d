"""The XFRM MIB of a namespace (``net->mib.xfrm_statistics``, include/uapi/linux/snmp.h) and
``/proc/net/xfrm_stat`` (net/xfrm/xfrm_proc.c ``xfrm_statistics_seq_show``).

The data path counts every drop under the kernel's MIB name; the list order is the one a
6.18 kernel prints (the machine's own /proc/net/xfrm_stat)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace

XFRM_MIB_LIST = (
    "XfrmInError", "XfrmInBufferError", "XfrmInHdrError", "XfrmInNoStates",
    "XfrmInStateProtoError", "XfrmInStateModeError", "XfrmInStateSeqError",
    "XfrmInStateExpired", "XfrmInStateMismatch", "XfrmInStateInvalid", "XfrmInTmplMismatch",
    "XfrmInNoPols", "XfrmInPolBlock", "XfrmInPolError", "XfrmOutError",
    "XfrmOutBundleGenError", "XfrmOutBundleCheckError", "XfrmOutNoStates",
    "XfrmOutStateProtoError", "XfrmOutStateModeError", "XfrmOutStateSeqError",
    "XfrmOutStateExpired", "XfrmOutPolBlock", "XfrmOutPolDead", "XfrmOutPolError",
    "XfrmFwdHdrError", "XfrmOutStateInvalid", "XfrmAcquireError", "XfrmOutStateDirError",
    "XfrmInStateDirError", "XfrmInIptfsError", "XfrmOutNoQueueSpace",
)
_KNOWN = frozenset(XFRM_MIB_LIST)


def xfrm_mib(ns: NetNamespace) -> dict[str, int]:
    """The namespace's counters, created (all zero) on first use."""
    xnet = ns.xfrm
    mib: dict[str, int] | None = getattr(xnet, "xfrm_statistics", None)
    if mib is None:
        mib = xnet.xfrm_statistics = dict.fromkeys(XFRM_MIB_LIST, 0)
    return mib


def XFRM_INC_STATS(ns: NetNamespace, name: str, n: int = 1) -> None:
    assert name in _KNOWN, name
    xfrm_mib(ns)[name] += n


def xfrm_statistics_seq_show(ns: NetNamespace) -> str:
    """``seq_printf(seq, "%-24s\\t%lu\\n", ...)`` per item."""
    mib = xfrm_mib(ns)
    return "".join(f"{name:<24}\t{mib[name]}\n" for name in XFRM_MIB_LIST)


def _proc_xfrm_stat(kernel: Kernel, ns: NetNamespace, path: str) -> str:
    return xfrm_statistics_seq_show(ns)


# the files of xfrm_proc_init, registered by the package's init call: (path, read, write)
FILES: tuple[tuple[str, Callable[[Kernel, NetNamespace, str], str], None], ...] = (
    ("/proc/net/xfrm_stat", _proc_xfrm_stat, None),
)
