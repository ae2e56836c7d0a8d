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

from netlink_codec.netlink import kernel_attrs, nla, nla_u32

from ..netlink.core import Reply

IFLA_XFRM_LINK, IFLA_XFRM_IF_ID, IFLA_XFRM_COLLECT_METADATA = 1, 2, 3
ARPHRD_NONE, IFF_NOARP = 65534, 0x80
IP_MAX_MTU = 0xFFFF


@dataclass
class XfrmIfParms:
    """``struct xfrm_if_parms``."""
    link: int = 0
    if_id: int = 0
    collect_md: bool = False


def xfrmi_dev_setup(dev) -> None:
    dev.type = ARPHRD_NONE
    dev.flags = IFF_NOARP
    dev.mtu, dev.min_mtu, dev.max_mtu = 1500, 68, IP_MAX_MTU
    dev.address = b""                 # addr_len 0: no IFLA_ADDRESS / IFLA_BROADCAST
    dev.broadcast = b""
    dev.xfrmi = XfrmIfParms()


def _parms(buf, data_ra) -> XfrmIfParms | Reply:
    """``xfrmi_netlink_parms`` after the policy (u32, u32, flag)."""
    p = XfrmIfParms()
    if data_ra is None:
        return p
    for ra in kernel_attrs(buf, data_ra.start, data_ra.end)[0]:
        n = ra.end - ra.start
        if ra.type in (IFLA_XFRM_LINK, IFLA_XFRM_IF_ID):
            if n < 4:
                return Reply(-E.ERANGE, "Attribute failed policy validation")
            v = struct.unpack_from("=I", buf, ra.start)[0]
            if ra.type == IFLA_XFRM_LINK:
                p.link = v
            else:
                p.if_id = v
        elif ra.type == IFLA_XFRM_COLLECT_METADATA:
            p.collect_md = True
    return p


def _others(ns, dev):
    return [d for d in ns.links if d is not dev and getattr(d, "xfrmi", None) is not None]


def xfrmi_newlink(ns, dev, buf, data_ra) -> Reply | None:
    """Checks and parameters of a new interface; a Reply refuses it."""
    p = _parms(buf, data_ra)
    if isinstance(p, Reply):
        return p
    if p.collect_md:
        if p.link or p.if_id:
            return Reply(-E.EINVAL, "link and if_id must be zero")
        if any(d.xfrmi.collect_md for d in _others(ns, dev)):
            return Reply(-E.EEXIST)
    else:
        if not p.if_id:
            return Reply(-E.EINVAL, "if_id must be non zero")
        if any(not d.xfrmi.collect_md and d.xfrmi.if_id == p.if_id for d in _others(ns, dev)):
            return Reply(-E.EEXIST)                  # xfrmi_locate
    dev.xfrmi = p
    return None


def xfrmi_changelink(ns, dev, buf, data_ra) -> Reply | None:
    p = _parms(buf, data_ra)
    if isinstance(p, Reply):
        return p
    if not p.if_id:
        return Reply(-E.EINVAL, "if_id must be non zero")
    if p.collect_md or dev.xfrmi.collect_md:
        return Reply(-E.EINVAL, "collect_md can't be changed")
    if any(not d.xfrmi.collect_md and d.xfrmi.if_id == p.if_id for d in _others(ns, dev)):
        return Reply(-E.EEXIST)
    if dev.xfrmi.link != p.link:                     # xfrmi_change
        return Reply(-E.EINVAL)
    dev.xfrmi.if_id = p.if_id
    return None


def xfrmi_fill_info(dev) -> bytes:
    p = dev.xfrmi
    body = nla_u32(IFLA_XFRM_LINK, p.link) + nla_u32(IFLA_XFRM_IF_ID, p.if_id)
    if p.collect_md:
        body += nla(IFLA_XFRM_COLLECT_METADATA, b"")
    return body


def xfrmi_lookup(ns, if_id: int):
    """``xfrmi_lookup``: the running interface of a state's if_id, else the running
    collect_md one, else None."""
    devs = [d for d in ns.links if getattr(d, "xfrmi", None) is not None and d.up]
    for d in devs:
        if not d.xfrmi.collect_md and d.xfrmi.if_id == if_id:
            return d
    return next((d for d in devs if d.xfrmi.collect_md), None)
