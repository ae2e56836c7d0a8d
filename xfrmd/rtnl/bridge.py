"""PF_BRIDGE link messages (net/bridge/br_netlink.c, ``rtnl_bridge_getlink`` /
``rtnl_bridge_setlink`` in net/core/rtnetlink.c): what `bridge link show` and
`bridge link set` talk to. A dump lists bridge ports only (the bridge itself too when VLAN
information is asked for); a set changes a port's flags, path cost, priority and multicast
router type as ``br_setport`` does, with its errnos, and announces the port."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any

from devices.netdev import NetDevice
from netlink_codec.netlink import NLA_F_NESTED, NLM_F_MULTI, RawAttr, kernel_attrs

from ..errors import KernelError
from ..netlink.core import Reply
from .br_netlink import (AF_BRIDGE, IFLA_PROTINFO, is_port, br_fill_ifinfo, br_ifinfo_notify,
                         br_setport)
from .link import IFINFOMSG

if TYPE_CHECKING:
    from ..netlink.core import Request

RTM_GETLINK, RTM_SETLINK = 18, 19
IFLA_EXT_MASK, IFLA_AF_SPEC = 29, 26
IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_MASTER, BRIDGE_FLAGS_SELF = 0, 1, 2
# the dump asks for VLAN / MRP / CFM data: the bridge device answers for itself too
RTEXT_FILTER_BRIDGE_SELF = 0x2 | 0x10 | 0x20 | 0x40 | 0x80


def _attrs(buf: Any, start: int, end: int) -> list[RawAttr]:
    return kernel_attrs(buf, start, end)[0]         # nla_for_each_attr: liberal


def _ext_mask(req: Request) -> int:
    for ra in _attrs(req.buf, req.payload_offset + IFINFOMSG.size, req.end):
        if ra.type == IFLA_EXT_MASK and ra.end - ra.start >= 4:
            mask: int = struct.unpack_from("=I", req.buf, ra.start)[0]
            return mask
    return 0


def rtnl_bridge_getlink(req: Request) -> object:
    """Every device in index order: a port answers through its bridge (``br_getlink``), a
    bridge for itself only when the filter asks for VLAN, MRP or CFM data."""
    if req.end - req.payload_offset < IFINFOMSG.size:
        mask = 0
    else:
        mask = _ext_mask(req)
    seq, portid = req.hdr.seq, req.sock.portid
    msgs = []
    for dev in list(req.netns.links):
        if is_port(dev) or (dev.kind == "bridge" and mask & RTEXT_FILTER_BRIDGE_SELF):
            msgs.append(br_fill_ifinfo(dev, seq, portid, NLM_F_MULTI))
    return req.start_dump(msgs)


def rtnl_bridge_setlink(req: Request) -> Reply:
    """``rtnl_bridge_setlink``: to the device's master bridge (``br_setlink``) unless
    IFLA_BRIDGE_FLAGS says self only; a device without a bridge master → EOPNOTSUPP."""
    off = req.payload_offset
    if req.end - off < IFINFOMSG.size:
        raise KernelError(E.EINVAL)
    _, _, index, _, _ = IFINFOMSG.unpack_from(req.buf, off)
    dev = req.netns.links.by_index(index)
    if dev is None:
        raise KernelError(E.ENODEV, "unknown ifindex")
    attrs = list(_attrs(req.buf, off + IFINFOMSG.size, req.end))
    flags = 0
    for ra in attrs:
        if ra.type == IFLA_AF_SPEC:
            for a in _attrs(req.buf, ra.start, ra.end):
                if a.type == IFLA_BRIDGE_FLAGS:
                    if a.end - a.start < 2:
                        raise KernelError(E.EINVAL)
                    flags = struct.unpack_from("=H", req.buf, a.start)[0]
                    break
            else:
                continue
            break
    if flags and not flags & BRIDGE_FLAGS_MASTER:
        raise KernelError(E.EOPNOTSUPP)             # self: no ndo_bridge_setlink here
    if not is_port(dev):
        raise KernelError(E.EOPNOTSUPP)
    protinfo = next((ra for ra in attrs if ra.type == IFLA_PROTINFO), None)
    if protinfo is None:
        if any(ra.type == IFLA_AF_SPEC for ra in attrs):
            raise KernelError(E.EOPNOTSUPP, "xfrmd: bridge VLAN settings are not modelled")
        return Reply()
    if not protinfo.flags & NLA_F_NESTED:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: the old binary IFLA_PROTINFO (a port "
                          "state byte) is not modelled")
    tb = {a.type: bytes(req.buf[a.start:a.end])
          for a in _attrs(req.buf, protinfo.start, protinfo.end)}
    br_setport(dev, tb)
    br_ifinfo_notify(dev)
    return Reply()


# br_netlink_init: the PF_BRIDGE rows (family, msgtype, doit, dumpit)
RTNL_MSG_HANDLERS = (
    (AF_BRIDGE, RTM_GETLINK, None, rtnl_bridge_getlink),
    (AF_BRIDGE, RTM_SETLINK, rtnl_bridge_setlink, None),
)
