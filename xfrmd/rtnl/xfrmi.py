"""XFRM interfaces (net/xfrm/xfrm_interface_core.c, link kind ``xfrm``): route-based IPsec
devices that tie an ``if_id`` to the states and policies carrying the same XFRMA_IF_ID.
``ip link add NAME type xfrm dev PHYS if_id N`` (IFLA_XFRM_LINK, IFLA_XFRM_IF_ID) or
``… type xfrm external`` (IFLA_XFRM_COLLECT_METADATA, one per namespace), validated as
``xfrmi_newlink`` / ``xfrmi_changelink`` do, with their extack; the device is set up as
``xfrmi_dev_setup`` makes it (ARPHRD_NONE, NOARP, no hardware address, MTU 1500) and
``xfrmi_fill_info`` reports it, so ``ip -d link show`` prints ``xfrm if_id 0x…``.
Traffic routed through an interface is looked up by its if_id (datapath/output.py); an
inbound packet whose SA carries an interface's if_id arrives on that interface and is
checked against the IN policies of that if_id (datapath/input.py)."""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devices.netdev import NetDevice
from netlink_codec.netlink import RawAttr, kernel_attrs, nla, nla_u32

from ..errors import KernelError
from .link import LinkMsg, RtnlLinkOps, rtmsg_ifinfo

if TYPE_CHECKING:
    from ..kernel import NetNamespace
    from ..netlink.core import Request

IFLA_XFRM_LINK, IFLA_XFRM_IF_ID, IFLA_XFRM_COLLECT_METADATA = 1, 2, 3
ARPHRD_NONE, IFF_NOARP = 65534, 0x80
IP_MAX_MTU = 0xFFFF


@dataclass
class XfrmIfParms:
    """``struct xfrm_if_parms``."""
    link: int = 0
    if_id: int = 0
    collect_md: bool = False
    # on xfrmn->xfrmi[] (xfrmi_link): every interface with its own if_id from birth; the
    # collect_md one (xfrmn->collect_md_xfrmi) only after a changelink gave it an if_id
    hashed: bool = False


def xfrmi_dev_setup(dev: NetDevice) -> None:
    """``xfrmi_dev_setup``."""
    dev.type = ARPHRD_NONE
    dev.flags = IFF_NOARP
    dev.mtu, dev.min_mtu, dev.max_mtu = 1500, 68, IP_MAX_MTU
    dev.address = b""                 # addr_len 0: no IFLA_ADDRESS / IFLA_BROADCAST
    dev.broadcast = b""
    dev.xfrmi = XfrmIfParms()


def _parms(buf: Any, data_ra: RawAttr | None) -> XfrmIfParms:
    """``xfrmi_netlink_parms`` after the policy (u32, u32, flag)."""
    p = XfrmIfParms()
    if data_ra is None:
        return p
    for ra in kernel_attrs(buf, data_ra.start, data_ra.end)[0]:
        n = ra.end - ra.start
        if ra.type in (IFLA_XFRM_LINK, IFLA_XFRM_IF_ID):
            if n < 4:
                raise KernelError(E.ERANGE, "Attribute failed policy validation")
            v = struct.unpack_from("=I", buf, ra.start)[0]
            if ra.type == IFLA_XFRM_LINK:
                p.link = v
            else:
                p.if_id = v
        elif ra.type == IFLA_XFRM_COLLECT_METADATA:
            p.collect_md = True
    return p


def _others(ns: NetNamespace, dev: NetDevice) -> list[NetDevice]:
    return [d for d in ns.links if d is not dev and getattr(d, "xfrmi", None) is not None]


def xfrmi_locate(ns: NetNamespace, if_id: int) -> NetDevice | None:
    """``xfrmi_locate``: the interface on the if_id hash with this if_id."""
    return next((d for d in ns.links if getattr(d, "xfrmi", None) is not None
                 and d.xfrmi.hashed and d.xfrmi.if_id == if_id), None)


def xfrmi_newlink(ns: NetNamespace, dev: NetDevice, buf: Any, data_ra: RawAttr | None) -> None:
    """``xfrmi_newlink``'s checks and parameters of a new interface (before the common
    attributes are applied); KernelError refuses it."""
    p = _parms(buf, data_ra)
    if p.collect_md:
        if p.link or p.if_id:
            raise KernelError(E.EINVAL, "link and if_id must be zero")
        if any(d.xfrmi.collect_md for d in _others(ns, dev)):   # xfrmn->collect_md_xfrmi
            raise KernelError(E.EEXIST)
    else:
        if not p.if_id:
            raise KernelError(E.EINVAL, "if_id must be non zero")
        if xfrmi_locate(ns, p.if_id) is not None:
            raise KernelError(E.EEXIST)
    p.hashed = not p.collect_md                      # xfrmi_create
    dev.xfrmi = p


def xfrmi_changelink(req: Request, dev: NetDevice, m: LinkMsg, data_ra: RawAttr) -> None:
    """``xfrmi_changelink``: only the if_id changes. The flag is refused, but a collect_md
    interface given an if_id takes it, stays collect_md and joins the if_id hash
    (``xfrmi_update`` → ``xfrmi_link``), so the next change to that if_id finds it there:
    "device can't be changed to collect_md". ``xfrmi_update`` announces the device
    (netdev_state_change, when up) even when ``xfrmi_change`` refuses a different link."""
    p = _parms(m.buf, data_ra)
    if not p.if_id:
        raise KernelError(E.EINVAL, "if_id must be non zero")
    if p.collect_md:
        raise KernelError(E.EINVAL, "collect_md can't be changed")
    xi = xfrmi_locate(req.netns, p.if_id)
    if xi is not None and xi is not dev:
        raise KernelError(E.EEXIST)
    if xi is not None and xi.xfrmi.collect_md:
        raise KernelError(E.EINVAL, "device can't be changed to collect_md")
    changed = dev.xfrmi.link == p.link               # xfrmi_change
    if changed:
        dev.xfrmi.if_id = p.if_id
    dev.xfrmi.hashed = True                          # xfrmi_link
    if dev.up:
        rtmsg_ifinfo(dev)
    if not changed:
        raise KernelError(E.EINVAL)


def xfrmi_fill_info(dev: NetDevice, cap_net_admin: bool = True) -> bytes:
    p = dev.xfrmi
    body = nla_u32(IFLA_XFRM_LINK, p.link) + nla_u32(IFLA_XFRM_IF_ID, p.if_id)
    if p.collect_md:
        body += nla(IFLA_XFRM_COLLECT_METADATA, b"")
    return body


def xfrmi_get_iflink(dev: NetDevice) -> int | None:
    """``xfrmi_get_iflink``: the lower device's index, when the interface has one."""
    link: int = dev.xfrmi.link
    return link or None


XFRMI_LINK_OPS = RtnlLinkOps(kind="xfrm", driver="xfrm", setup=xfrmi_dev_setup,
                             validate=xfrmi_newlink, changelink=xfrmi_changelink,
                             fill_info=xfrmi_fill_info, get_iflink=xfrmi_get_iflink)


def xfrmi_lookup(ns: NetNamespace, if_id: int) -> NetDevice | None:
    """``xfrmi_lookup``: the running interface of a state's if_id, else the running
    collect_md one, else None."""
    devs: list[NetDevice] = [d for d in ns.links if getattr(d, "xfrmi", None) is not None and d.up]
    for d in devs:
        if d.xfrmi.hashed and d.xfrmi.if_id == if_id:
            return d
    return next((d for d in devs if d.xfrmi.collect_md), None)
