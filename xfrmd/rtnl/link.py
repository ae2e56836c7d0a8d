"""RTM_NEWLINK / GETLINK / SETLINK (rtnetlink.c ``rtnl_fill_ifinfo``, ``rtnl_getlink``,
``rtnl_dump_ifinfo``, ``rtnl_newlink``)."""
from __future__ import annotations

import errno as E
import struct

from netlink_codec.netlink import (NLM_F_MULTI, encode_msg, iter_attrs, nla, nla_nested,
                                   nla_string, nla_u8, nla_u32)

from ..netlink.core import Reply
from . import rtnl_handler

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
IFINFOMSG = struct.Struct("=BxHiII")
(IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_QDISC, IFLA_MASTER, IFLA_TXQLEN,
 IFLA_OPERSTATE, IFLA_LINKMODE, IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_GROUP, IFLA_PROMISCUITY,
 IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_CARRIER, IFLA_CARRIER_CHANGES, IFLA_PROTO_DOWN,
 IFLA_GSO_MAX_SEGS, IFLA_GSO_MAX_SIZE, IFLA_MIN_MTU, IFLA_MAX_MTU, IFLA_GRO_MAX_SIZE,
 IFLA_TSO_MAX_SIZE, IFLA_TSO_MAX_SEGS, IFLA_ALLMULTI) = (1, 2, 3, 4, 6, 10, 13, 16, 17, 18, 26,
                                                           27, 30, 31, 32, 33, 35, 39, 40, 41,
                                                           50, 51, 58, 59, 60, 61)
IFLA_INFO_KIND = 1
AF_INET6, IFLA_INET6_ADDR_GEN_MODE = 10, 8
HARDWARE_KINDS = ("netdevsim", "mlx5", "airoha-soe")


def _qdisc(dev) -> str:
    if not getattr(dev, "ever_up", False) and not dev.up:
        return "noop"
    return "mq" if dev.kind in HARDWARE_KINDS else "noqueue"


def fill_ifinfo(dev, msg_type: int, seq: int, portid: int, flags: int = 0) -> bytes:
    """``rtnl_fill_ifinfo``: the attributes ip link shows, in the kernel's order."""
    body = IFINFOMSG.pack(0, dev.type, dev.ifindex, dev.dev_flags(), 0)
    body += nla_string(IFLA_IFNAME, dev.name) + nla_u32(IFLA_TXQLEN, dev.txqlen)
    body += nla_u8(IFLA_OPERSTATE, dev.operstate) + nla_u8(IFLA_LINKMODE, 0)
    body += nla_u32(IFLA_MTU, dev.mtu) + nla_u32(IFLA_MIN_MTU, dev.min_mtu)
    body += nla_u32(IFLA_MAX_MTU, dev.max_mtu) + nla_u32(IFLA_GROUP, 0)
    body += nla_u32(IFLA_PROMISCUITY, 0) + nla_u32(IFLA_ALLMULTI, 0)
    body += nla_u32(IFLA_NUM_TX_QUEUES, 1) + nla_u32(IFLA_GSO_MAX_SEGS, 65535)
    body += nla_u32(IFLA_GSO_MAX_SIZE, 65536) + nla_u32(IFLA_GRO_MAX_SIZE, 65536)
    body += nla_u32(IFLA_TSO_MAX_SIZE, 524280) + nla_u32(IFLA_TSO_MAX_SEGS, 65535)
    body += nla_u32(IFLA_NUM_RX_QUEUES, 1) + nla_u8(IFLA_CARRIER, int(dev.carrier))
    body += nla_u32(IFLA_CARRIER_CHANGES, getattr(dev, "carrier_changes", 0))
    body += nla_u8(IFLA_PROTO_DOWN, 0)
    body += nla_string(IFLA_QDISC, _qdisc(dev))
    if dev.master is not None:
        body += nla_u32(IFLA_MASTER, dev.master.ifindex)
    body += nla(IFLA_ADDRESS, dev.address) + nla(IFLA_BROADCAST, dev.broadcast)
    if dev.kind not in ("loopback",) + HARDWARE_KINDS:
        body += nla_nested(IFLA_LINKINFO, nla_string(IFLA_INFO_KIND, dev.kind))
    body += nla_nested(IFLA_AF_SPEC, nla_nested(AF_INET6, nla_u8(IFLA_INET6_ADDR_GEN_MODE, 0)))
    return encode_msg(msg_type, flags, seq, portid, body)


def _find(req):
    """The device a GETLINK/NEWLINK names: ifi_index, else IFLA_IFNAME."""
    off = req.payload_offset
    if req.hdr.len - 16 < IFINFOMSG.size:
        return None, Reply(-E.EINVAL, "Invalid header for link request")
    _, _, ifindex, _, _ = IFINFOMSG.unpack_from(req.buf, off)
    name = None
    for ra in iter_attrs(req.buf, off + IFINFOMSG.size, req.end):
        if ra.type == IFLA_IFNAME:
            name = bytes(req.buf[ra.start:ra.end]).split(b"\0", 1)[0].decode(errors="replace")
    links = req.netns.links
    if ifindex > 0:
        return links.by_index(ifindex), None
    if name:
        return links.by_name(name), None
    return None, None


@rtnl_handler(RTM_GETLINK)
def rtnl_getlink(req):
    dev, bad = _find(req)
    if bad is not None:
        return bad
    if dev is None:
        return Reply(-E.ENODEV)
    req.unicast(fill_ifinfo(dev, RTM_NEWLINK, req.hdr.seq, req.sock.portid))
    return Reply()


@rtnl_handler(RTM_GETLINK, dump=True)
def rtnl_dump_ifinfo(req):
    seq, portid = req.hdr.seq, req.sock.portid
    return req.start_dump(fill_ifinfo(d, RTM_NEWLINK, seq, portid, NLM_F_MULTI)
                          for d in list(req.netns.links))


@rtnl_handler(RTM_NEWLINK)
def rtnl_newlink(req):
    """Changing an existing link (up/down); creating links is not modelled here yet."""
    dev, bad = _find(req)
    if bad is not None:
        return bad
    if dev is None:
        return Reply(-E.ENODEV)
    _, _, _, flags, change = IFINFOMSG.unpack_from(req.buf, req.payload_offset)
    if change & 1 or (change == 0 and flags & 1):
        from devices.netdev import IFF_UP, call_netdevice_notifiers
        want_up = bool(flags & IFF_UP)
        if want_up != dev.up:
            dev.flags = dev.flags | IFF_UP if want_up else dev.flags & ~IFF_UP
            dev.ever_up = True
            call_netdevice_notifiers("NETDEV_UP" if want_up else "NETDEV_DOWN", dev)
    for ra in iter_attrs(req.buf, req.payload_offset + IFINFOMSG.size, req.end):
        if ra.type not in (IFLA_IFNAME,):
            return Reply(-E.EOPNOTSUPP, "xfrmd: this link change is not modelled yet")
    return Reply()
