"""The XFRM subsystem: xfrm_user (netlink), the SAD and SPD, lifetimes and events."""


from typing import Any  # noqa: E402


def init(kernel: Any) -> None:
    """``xfrm_init`` + ``xfrm_user_init``: the NETLINK_XFRM family (whose ``init_net`` makes
    each namespace's SAD and SPD)."""
    from .user import XfrmUser
    kernel.netlink_kernel_create(XfrmUser(kernel))
