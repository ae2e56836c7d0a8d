"""PF_BRIDGE neighbour messages: the forwarding databases `bridge fdb` talks to
(net/core/rtnetlink.c ``rtnl_fdb_add`` / ``rtnl_fdb_del`` / ``rtnl_fdb_get`` /
``rtnl_fdb_dump``). A bridge's table (net/bridge/br_fdb.c): the local entry of each port's
own address, made when it joins, and the static entries a user adds for a port
(``bridge fdb add MAC dev PORT [master]``: permanent — local — or static), newest first;
nothing is learnt and nothing ages. A VXLAN device's own table (``… dev VXLAN dst IP
self``, xfrmd/rtnl/vxlan.py). Other devices list the unicast addresses added to them
(``… dev DEV self``, ``ndo_dflt_fdb_add``) and their multicast addresses
(``ndo_dflt_fdb_dump``). Changes are announced
on RTNLGRP_NEIGH."""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass
from typing import Any

from netlink_codec.netlink import NETLINK_ROUTE, NLM_F_MULTI, encode_msg, kernel_attrs, nla, nla_u32

from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .vxlan import (vxlan_fdb_add, vxlan_fdb_delete, vxlan_fdb_entries, vxlan_fdb_find,
                    vxlan_fdb_info)

RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NDMSG = struct.Struct("=BxxxiHBB")          # family, ifindex, state, flags, type
NDA_LLADDR, NDA_CACHEINFO, NDA_VLAN, NDA_VNI, NDA_IFINDEX, NDA_MASTER = 2, 3, 5, 7, 8, 9
NUD_REACHABLE, NUD_NOARP, NUD_PERMANENT = 0x02, 0x40, 0x80
NTF_USE, NTF_SELF, NTF_MASTER, NTF_EXT_LEARNED = 0x01, 0x02, 0x04, 0x10
RTNLGRP_NEIGH = 3
ARPHRD_ETHER = 1
AF_BRIDGE = 7


@dataclass
class BrFdb:
    """``struct net_bridge_fdb_entry`` a user added: its port (None: the bridge itself) and
    whether it is local (NUD_PERMANENT) or only static (NUD_NOARP)."""
    mac: bytes
    port: Any
    local: bool


def _entries(br: Any) -> list[BrFdb]:
    """The user-added entries of bridge ``br``, newest first (``fdb_create``'s
    hlist_add_head)."""
    tables: dict[int, list[BrFdb]] = br.netns.__dict__.setdefault("br_fdb", {})
    return tables.setdefault(id(br), [])


def _local_of_port(br: Any, mac: bytes) -> Any:
    """The port whose own address this is (``br_add_if``'s local entry), or None."""
    return next((p for p in br.netns.links if p.master is br and bytes(p.address) == mac), None)


def br_fdb_delete_by_port(br: Any, port: Any) -> None:
    """``br_fdb_delete_by_port`` as a port leaves: its entries go, static ones too."""
    tbl = _entries(br)
    tbl[:] = [f for f in tbl if f.port is not port]


def br_fdb_flush(br: Any) -> None:
    """A bridge going away takes its table along."""
    br.netns.__dict__.get("br_fdb", {}).pop(id(br), None)


def fdb_fill_info(br: Any, port: Any, mac: bytes, state: int, msg_type: int, seq: int,
                  portid: int, flags: int) -> bytes:
    """``fdb_fill_info``: the port's index (the bridge's for its own entries), the state
    ``fdb_to_nud`` gives, NDA_MASTER, NDA_LLADDR, the cache times."""
    body = NDMSG.pack(AF_BRIDGE, (port or br).ifindex, state, 0, 0)
    body += nla_u32(NDA_MASTER, br.ifindex) + nla(NDA_LLADDR, mac) + nla(NDA_CACHEINFO, bytes(16))
    return encode_msg(msg_type, flags, seq, portid, body)


def _fill_br(br: Any, f: BrFdb, msg_type: int, seq: int, portid: int, flags: int) -> bytes:
    return fdb_fill_info(br, f.port, f.mac, NUD_PERMANENT if f.local else NUD_NOARP,
                         msg_type, seq, portid, flags)


def _notify(ns: Any, msg: bytes) -> None:
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_NEIGH, msg)


def _parse(req: Request) -> tuple[tuple[int, int, int, int, int], dict[int, bytes]]:
    off = req.payload_offset
    if req.end - off < NDMSG.size:
        raise KernelError(E.EINVAL, "Invalid header for neighbor message")
    fields = NDMSG.unpack_from(req.buf, off)
    tb = {ra.type & 0x3FFF: bytes(req.buf[ra.start:ra.end])
          for ra in kernel_attrs(req.buf, off + NDMSG.size, req.end)[0]}
    return fields, tb


def _dev_and_addr(req: Request, verb: str) -> tuple[Any, tuple[int, int, int, int, int],
                                                     dict[int, bytes], bytes]:
    """The prologue of ``rtnl_fdb_add`` / ``rtnl_fdb_del``: the device, the Ethernet
    address (``verb``: "add" or "delete" in the extack), no VLAN."""
    fields, tb = _parse(req)
    if not fields[1]:
        raise KernelError(E.EINVAL, "invalid ifindex")
    dev = req.netns.links.by_index(fields[1])
    if dev is None:
        raise KernelError(E.ENODEV, "unknown ifindex")
    if len(tb.get(NDA_LLADDR, b"")) != 6:
        raise KernelError(E.EINVAL, "invalid address")
    if dev.type != ARPHRD_ETHER:
        raise KernelError(E.EINVAL, f"FDB {verb} only supported for Ethernet devices")
    if NDA_VLAN in tb:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: VLAN-keyed FDB entries are not modelled")
    return dev, fields, tb, tb[NDA_LLADDR]


def _is_port(dev: Any) -> bool:
    return dev.master is not None and dev.master.kind == "bridge"


def br_fdb_add(req: Request, br: Any, port: Any, mac: bytes, state: int, ndm_flags: int) -> None:
    """``br_fdb_add`` → ``fdb_add_entry``: a permanent, static or reachable state (the
    bridge itself only permanent); EEXIST under NLM_F_EXCL, ENOENT without NLM_F_CREATE."""
    if ndm_flags & (NTF_USE | NTF_EXT_LEARNED):
        raise KernelError(E.EOPNOTSUPP, "xfrmd: FDB use and externally learnt entries are not "
                          "modelled")
    if not state & (NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE):
        raise KernelError(E.EINVAL)
    if port is None and not state & NUD_PERMANENT:
        raise KernelError(E.EINVAL)
    if not state & (NUD_PERMANENT | NUD_NOARP):
        raise KernelError(E.EOPNOTSUPP, "xfrmd: dynamic (ageing) FDB entries are not modelled")
    flags = req.hdr.flags
    f = next((f for f in _entries(br) if f.mac == mac), None)
    if f is None and _local_of_port(br, mac) is not None:
        if flags & 0x200:                                     # NLM_F_EXCL
            raise KernelError(E.EEXIST)
        raise KernelError(E.EOPNOTSUPP, "xfrmd: changing a port's own FDB entry is not "
                          "modelled")
    if f is None:
        if not flags & 0x400:                                 # NLM_F_CREATE
            raise KernelError(E.ENOENT)
        f = BrFdb(mac, port, bool(state & NUD_PERMANENT))
        _entries(br).insert(0, f)
    else:
        if flags & 0x200:
            raise KernelError(E.EEXIST)
        if f.port is port and f.local == bool(state & NUD_PERMANENT):
            return                                            # nothing modified: no notify
        f.port, f.local = port, bool(state & NUD_PERMANENT)
    _notify(req.netns, _fill_br(br, f, RTM_NEWNEIGH, 0, 0, 0))


def rtnl_fdb_add(req: Request) -> Reply:
    """The bridge's table for a port (no flags or NTF_MASTER), then the device's own with
    NTF_SELF: a VXLAN device's, or a bridge's for itself; others are not modelled."""
    dev, (_f, _i, state, ndm_flags, _t), tb, mac = _dev_and_addr(req, "add")
    done = False
    if (not ndm_flags or ndm_flags & NTF_MASTER) and _is_port(dev):
        br_fdb_add(req, dev.master, dev, mac, state, ndm_flags & ~NTF_MASTER)
        ndm_flags &= ~NTF_MASTER
        done = True
    if ndm_flags & NTF_SELF:
        if dev.kind == "vxlan":
            f = vxlan_fdb_add(dev, mac, state, ndm_flags, tb, req.hdr.flags)
            _notify(req.netns, encode_msg(RTM_NEWNEIGH, 0, 0, 0, vxlan_fdb_info(dev, f)))
        elif dev.kind == "bridge":
            br_fdb_add(req, dev, None, mac, state, ndm_flags & ~NTF_SELF)
        else:
            ndo_dflt_fdb_add(req, dev, mac, state)
        done = True
    if not done:
        raise KernelError(E.EOPNOTSUPP)
    return OK


def ndo_dflt_fdb_add(req: Request, dev: Any, mac: bytes, state: int) -> None:
    """``ndo_dflt_fdb_add``: a local (permanent) unicast address joins the device's unicast
    list (``dev_uc_add_excl``; EEXIST only under NLM_F_EXCL), announced as
    ``rtnl_fdb_notify`` does. The device's promiscuity does not follow (``__dev_set_rx_mode``
    is not modelled), nor do multicast addresses."""
    if state and not state & NUD_PERMANENT:
        raise KernelError(E.EINVAL)
    if mac[0] & 1 and mac[:5] != b"\x01\x80\xc2\x00\x00":
        raise KernelError(E.EOPNOTSUPP, "xfrmd: multicast FDB entries of a device are not "
                          "modelled")
    if mac in dev.uc_list:
        if req.hdr.flags & 0x200:
            raise KernelError(E.EEXIST)
    else:
        dev.uc_list.append(mac)
    _notify(req.netns, _dflt_msg(dev, mac, 0, 0, 0))


def ndo_dflt_fdb_del(req: Request, dev: Any, mac: bytes, state: int) -> None:
    """``ndo_dflt_fdb_del``: only a local address, ENOENT when the list lacks it."""
    if not state & NUD_PERMANENT:
        raise KernelError(E.EINVAL)
    if mac not in dev.uc_list:
        raise KernelError(E.ENOENT)
    dev.uc_list.remove(mac)
    _notify(req.netns, _dflt_msg(dev, mac, 0, 0, 0, RTM_DELNEIGH))


def rtnl_fdb_del(req: Request) -> Reply:
    """``rtnl_fdb_del``: the bridge's entry for the port (``fdb_delete_by_addr_and_port``:
    ENOENT unless the entry points at that port), then the device's own with NTF_SELF."""
    dev, (_f, _i, state, ndm_flags, _t), tb, mac = _dev_and_addr(req, "delete")
    done = False
    if (not ndm_flags or ndm_flags & NTF_MASTER) and _is_port(dev):
        br = dev.master
        f = next((f for f in _entries(br) if f.mac == mac), None)
        if f is None or f.port is not dev:
            raise KernelError(E.ENOENT)
        _entries(br).remove(f)
        _notify(req.netns, _fill_br(br, f, RTM_DELNEIGH, 0, 0, 0))
        ndm_flags &= ~NTF_MASTER
        done = True
    if ndm_flags & NTF_SELF:
        if dev.kind == "vxlan":
            f2 = vxlan_fdb_delete(dev, mac, tb)
            _notify(req.netns, encode_msg(RTM_DELNEIGH, 0, 0, 0, vxlan_fdb_info(dev, f2)))
        elif dev.kind == "bridge":
            f = next((f for f in _entries(dev) if f.mac == mac and f.port is None), None)
            if f is None:
                raise KernelError(E.ENOENT)
            _entries(dev).remove(f)
            _notify(req.netns, _fill_br(dev, f, RTM_DELNEIGH, 0, 0, 0))
        else:
            ndo_dflt_fdb_del(req, dev, mac, state)
        done = True
    if not done:
        raise KernelError(E.EOPNOTSUPP)
    return OK


def _valid_fdb_get(req: Request) -> tuple[int, int, int, dict[int, bytes]]:
    """``valid_fdb_get_strict``: (ndm_flags, port index, bridge index, attributes)."""
    off = req.payload_offset
    if req.end - off < NDMSG.size:
        raise KernelError(E.EINVAL, "Invalid header for fdb get request")
    _fam, ifindex, state, ndm_flags, ntype = NDMSG.unpack_from(req.buf, off)
    if bytes(req.buf[off + 1:off + 4]) != bytes(3) or state or ntype:
        raise KernelError(E.EINVAL, "Invalid values in header for fdb get request")
    if ndm_flags & ~(NTF_MASTER | NTF_SELF):
        raise KernelError(E.EINVAL, "Invalid flags in header for fdb get request")
    _, tb = _parse(req)
    br_idx = 0
    for t, v in tb.items():
        if t == NDA_MASTER and len(v) >= 4:
            br_idx = struct.unpack_from("=I", v)[0]
        elif t == NDA_LLADDR:
            if len(v) != 6:
                raise KernelError(E.EINVAL, "Invalid address in fdb get request")
        elif t not in (NDA_VLAN, NDA_VNI):
            raise KernelError(E.EINVAL, "Unsupported attribute in fdb get request")
    return ndm_flags, ifindex, br_idx, tb


def rtnl_fdb_get(req: Request) -> Reply:
    """``rtnl_fdb_get``: by port (its bridge's entry), by bridge (NDA_MASTER), or a device's
    own entry (NTF_SELF), with the kernel's extack; ``br_fdb_get`` / ``vxlan_fdb_get``."""
    ndm_flags, brport_idx, br_idx, tb = _valid_fdb_get(req)
    if len(tb.get(NDA_LLADDR, b"")) != 6:
        raise KernelError(E.EINVAL, "Invalid address")
    if NDA_VLAN in tb:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: VLAN-keyed FDB entries are not modelled")
    mac = tb[NDA_LLADDR]
    links = req.netns.links
    dev = br_dev = None
    if brport_idx:
        dev = links.by_index(brport_idx)
        if dev is None:
            raise KernelError(E.ENODEV, "Unknown device ifindex")
    if br_idx:
        if dev is not None:
            raise KernelError(E.EINVAL, "Master and device are mutually exclusive")
        br_dev = links.by_index(br_idx)
        if br_dev is None:
            raise KernelError(E.EINVAL, "Invalid master ifindex")
    target = br_dev
    if dev is not None:
        if not ndm_flags or ndm_flags & NTF_MASTER:
            if not _is_port(dev):
                raise KernelError(E.EINVAL, "Device is not a bridge port")
            target = dev.master
        else:
            target = dev
    if target is None:
        raise KernelError(E.ENODEV, "No device specified")
    seq, portid = req.hdr.seq, req.sock.portid
    if target.kind == "bridge":                                  # br_fdb_get
        f = next((f for f in _entries(target) if f.mac == mac), None)
        if f is not None:
            msg = _fill_br(target, f, RTM_NEWNEIGH, seq, portid, 0)
        else:
            port = _local_of_port(target, mac)
            if port is None:
                raise KernelError(E.ENOENT, "Fdb entry not found")
            msg = fdb_fill_info(target, port, mac, NUD_PERMANENT, RTM_NEWNEIGH, seq, portid, 0)
    elif target.kind == "vxlan":                                 # vxlan_fdb_get
        vf = vxlan_fdb_find(target, mac)
        if vf is None:
            raise KernelError(E.ENOENT, "Fdb entry not found")
        msg = encode_msg(RTM_NEWNEIGH, 0, seq, portid, vxlan_fdb_info(target, vf))
    else:
        raise KernelError(E.EOPNOTSUPP, "Fdb get operation not supported by device")
    req.unicast(msg)
    return OK


# -- the dump (rtnl_fdb_dump) --------------------------------------------------------------

def dev_mc_list(dev: Any) -> list[bytes]:
    """The device's multicast list in the order the stack joined: IPv6's all-nodes group
    (ipv6_add_dev), IPv4's all-hosts once up (ip_mc_up), then the solicited-node group of
    each IPv6 address while the device runs (addrconf_join_solict at DAD start)."""
    if dev.type != ARPHRD_ETHER or dev.kind == "loopback":
        return []
    if not dev.up:
        # ipv6_mc_down / ip_mc_down take the groups off a device that was up
        return [] if getattr(dev, "ever_up", False) else [b"\x33\x33\x00\x00\x00\x01"]
    out = [b"\x33\x33\x00\x00\x00\x01", b"\x01\x00\x5e\x00\x00\x01"]
    live = {b"\x33\x33\xff" + a.packed[13:16] for a in dev.addresses if a.family == 10}
    out += [m for m in getattr(dev, "mc_solicit", None) or () if m in live]
    return out


def _dflt_msg(dev: Any, mac: bytes, flags: int, seq: int, portid: int,
              msg_type: int = RTM_NEWNEIGH) -> bytes:
    """``nlmsg_populate_fdb_fill``: one of a device's own addresses, NTF_SELF."""
    body = NDMSG.pack(AF_BRIDGE, dev.ifindex, NUD_PERMANENT, NTF_SELF, 0)
    return encode_msg(msg_type, flags, seq, portid, body + nla(NDA_LLADDR, mac))


def _dump_filter(req: Request) -> tuple[int, int]:
    """(port index, bridge index): the ndmsg's index or NDA_IFINDEX, and NDA_MASTER."""
    off = req.payload_offset
    brport = br = 0
    if req.end - off >= NDMSG.size:
        brport = NDMSG.unpack_from(req.buf, off)[1]
        for ra in kernel_attrs(req.buf, off + NDMSG.size, req.end)[0]:
            if ra.type in (NDA_IFINDEX, NDA_MASTER) and ra.end - ra.start >= 4:
                v = struct.unpack_from("=I", req.buf, ra.start)[0]
                if ra.type == NDA_IFINDEX:
                    brport = v
                else:
                    br = v
    return brport, br


def rtnl_fdb_dump(req: Request) -> Any:
    """Each device in index order (or the one asked for; with NDA_MASTER a bridge and its
    ports): a bridge port's entries in its bridge's table (``br_fdb_dump`` filtered by
    port: the user's, newest first, then the port's own address), then the device's own
    table — a VXLAN device's entries, else its multicast list (``ndo_dflt_fdb_dump``)."""
    seq, portid = req.hdr.seq, req.sock.portid
    brport_idx, br_idx = _dump_filter(req)
    msgs = []
    for dev in list(req.netns.links):
        if brport_idx and dev.ifindex != brport_idx:
            continue
        if br_idx and not (dev.ifindex == br_idx and dev.kind == "bridge"
                           or _is_port(dev) and dev.master.ifindex == br_idx):
            continue
        if _is_port(dev):
            br = dev.master
            for f in _entries(br):
                if f.port is dev:
                    msgs.append(_fill_br(br, f, RTM_NEWNEIGH, seq, portid, NLM_F_MULTI))
            msgs.append(fdb_fill_info(br, dev, bytes(dev.address), NUD_PERMANENT,
                                      RTM_NEWNEIGH, seq, portid, NLM_F_MULTI))
        if dev.kind == "vxlan":
            msgs += [encode_msg(RTM_NEWNEIGH, NLM_F_MULTI, seq, portid, vxlan_fdb_info(dev, f))
                     for f in vxlan_fdb_entries(dev)]
            continue
        for mac in list(dev.uc_list) + dev_mc_list(dev):      # ndo_dflt_fdb_dump
            msgs.append(_dflt_msg(dev, mac, NLM_F_MULTI, seq, portid))
        if dev.kind == "bridge":                  # br_fdb_dump: its own entries
            msgs += [_fill_br(dev, f, RTM_NEWNEIGH, seq, portid, NLM_F_MULTI)
                     for f in _entries(dev) if f.port is None]
    return req.start_dump(msgs)


# rtnetlink_init: the PF_BRIDGE rows of the neighbour messages
RTNL_MSG_HANDLERS = (
    (AF_BRIDGE, RTM_NEWNEIGH, rtnl_fdb_add, None),
    (AF_BRIDGE, RTM_DELNEIGH, rtnl_fdb_del, None),
    (AF_BRIDGE, RTM_GETNEIGH, rtnl_fdb_get, rtnl_fdb_dump),
)
