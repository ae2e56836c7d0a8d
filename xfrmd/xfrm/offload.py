"""XFRMA_OFFLOAD_DEV: the core offload path (net/xfrm/xfrm_device.c).

Interface used by the SAD and SPD (owned by the offload work; until it lands every request
with XFRMA_OFFLOAD_DEV is refused with an ``xfrmd:`` message):

* ``xfrm_dev_state_add(req, x, xuo) -> Reply | None`` — called from the state construction
  path after the type init, before the SA is inserted (``xfrm_state_construct``).
  ``xuo`` is the decoded ``XfrmUserOffload``. ``None`` means success (or a silent software
  fallback for crypto offload, leaving ``x.xso`` empty); a Reply is the failure to return.
* ``xfrm_dev_state_delete(x)`` / ``xfrm_dev_state_free(x)`` — when the SA is deleted
  (``__xfrm_state_delete``) and destroyed.
* ``xfrm_dev_policy_add(req, pol, xuo, dir) -> Reply | None`` / ``xfrm_dev_policy_delete(pol)``
  / ``xfrm_dev_policy_free(pol)`` — the same for policies (``xfrm_policy_construct``).
* ``copy_user_offload(obj) -> bytes`` — the XFRMA_OFFLOAD_DEV attribute (header included)
  for an SA or policy read back, or ``b""`` when it is not offloaded (``copy_user_offload``).
"""
from __future__ import annotations

import errno as E

from ..netlink.core import Reply


def xfrm_dev_state_add(req, x, xuo) -> Reply | None:
    return Reply(-E.EOPNOTSUPP, "xfrmd: XFRMA_OFFLOAD_DEV is not modelled yet")


def xfrm_dev_state_delete(x) -> None:
    pass


def xfrm_dev_state_free(x) -> None:
    pass


def xfrm_dev_policy_add(req, pol, xuo, dir) -> Reply | None:
    return Reply(-E.EOPNOTSUPP, "xfrmd: XFRMA_OFFLOAD_DEV is not modelled yet")


def xfrm_dev_policy_delete(pol) -> None:
    pass


def xfrm_dev_policy_free(pol) -> None:
    pass


def copy_user_offload(obj) -> bytes:
    return b""
