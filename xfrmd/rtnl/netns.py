"""Namespace ids and moving devices between emulated namespaces (net/core/net_namespace.c
``peernet2id_alloc``, ``rtnl_net_getid``, ``rtnl_net_dumpid``; net/core/dev.c
``__dev_change_net_namespace``; ``default_device_exit_net``).

A process is "in" the emulated namespace its netlink sockets were opened in (XFRMD_NETNS),
so ``get_net_ns_by_pid`` finds the namespace of a process by its sockets' SO_PEERCRED pid:
``ip link set DEV netns PID`` and ``ip link add … peer … netns PID`` work as on Linux. A
namespace file descriptor (``netns NAME``: IFLA_NET_NS_FD / NETNSA_FD) is one the shim
handed out for ``/var/run/netns/NAME`` of an emulated namespace and announced (F_NETNS_FD)
with the request (``get_net_ns_by_fd``); any other fd names a real namespace the server
cannot see."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING

from devices.netdev import NetDevice, call_netdevice_notifiers
from netlink_codec.netlink import NETLINK_ROUTE, NLM_F_MULTI, encode_msg, nla

from ..errors import KernelError
from ..netlink.core import Reply
from ..netlink.nlattr import NlaPolicy, parse_attrs
from .addr import netdev_unregister

# netns.py and link.py call each other (net_namespace.c and dev.c/rtnetlink.c): a module
# import, resolved at call time
import xfrmd.rtnl.link as link  # noqa: E402,I001

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace
    from ..netlink.core import Request

RTM_NEWNSID, RTM_DELNSID, RTM_GETNSID = 88, 89, 90
NETNSA_NSID, NETNSA_PID, NETNSA_FD, NETNSA_TARGET_NSID, NETNSA_CURRENT_NSID = 1, 2, 3, 4, 5
NETNSA_MAX = 5
NETNSA_NSID_NOT_ASSIGNED = -1
RTNLGRP_NSID = 28
RTGENMSG = 4                      # struct rtgenmsg, NLMSG_ALIGN(1)

RTNL_NET_POLICY = {NETNSA_NSID: NlaPolicy("s32"), NETNSA_PID: NlaPolicy("u32"),
                   NETNSA_FD: NlaPolicy("u32"), NETNSA_TARGET_NSID: NlaPolicy("s32")}


def _ids(ns: NetNamespace) -> dict[int, NetNamespace]:
    """``net->netns_ids``: nsid → peer namespace."""
    ids: dict[int, NetNamespace] | None = ns.__dict__.get("netns_ids")
    if ids is None:
        ids = ns.__dict__["netns_ids"] = {}
    return ids


def peernet2id(ns: NetNamespace, peer: NetNamespace) -> int:
    for nsid, p in _ids(ns).items():
        if p is peer:
            return nsid
    return NETNSA_NSID_NOT_ASSIGNED


def peernet2id_alloc(ns: NetNamespace, peer: NetNamespace) -> int:
    """``peernet2id_alloc``: the peer's id in ``ns``, allocated (lowest free, from 0) and
    announced with RTM_NEWNSID on RTNLGRP_NSID the first time."""
    nsid = peernet2id(ns, peer)
    if nsid >= 0:
        return nsid
    if getattr(ns, "dying", False) or getattr(peer, "dying", False):
        return NETNSA_NSID_NOT_ASSIGNED         # maybe_get_net fails on a dying namespace
    ids = _ids(ns)
    nsid = 0
    while nsid in ids:
        nsid += 1
    ids[nsid] = peer
    rtnl_net_notifyid(ns, RTM_NEWNSID, nsid)
    return nsid


def _fill(msg_type: int, seq: int, portid: int, flags: int, nsid: int,
          current: int | None = None) -> bytes:
    """``rtnl_net_fill``."""
    body = bytes(RTGENMSG) + nla(NETNSA_NSID, struct.pack("=i", nsid))
    if current is not None:
        body += nla(NETNSA_CURRENT_NSID, struct.pack("=i", current))
    return encode_msg(msg_type, flags, seq, portid, body)


def rtnl_net_notifyid(ns: NetNamespace, cmd: int, nsid: int, portid: int = 0,
                      seq: int = 0) -> None:
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_NSID, _fill(cmd, seq, portid, 0, nsid))


def net_exit_ids(ns: NetNamespace) -> None:
    """``unhash_nsid``: every namespace forgets the dying one (RTM_DELNSID there)."""
    ns.dying = True
    for other in list(ns.kernel.namespaces.values()):
        if other is ns:
            continue
        nsid = peernet2id(other, ns)
        if nsid >= 0:
            del _ids(other)[nsid]
            rtnl_net_notifyid(other, RTM_DELNSID, nsid)
    _ids(ns).clear()


def get_net_ns_by_fd(req: Request, fd: int) -> NetNamespace | None:
    """``get_net_ns_by_fd``: the emulated namespace the shim said this fd stands for, or
    None (a real namespace's fd, or not a namespace at all)."""
    name = (req.sock.netns_fds or {}).get(fd)
    return req.kernel.namespaces.get(name) if name is not None else None


def get_net_ns_by_pid(kernel: Kernel, pid: int) -> NetNamespace | None:
    """The emulated namespace of process ``pid``: the one it moved to (unshare, setns), else
    where its netlink sockets live."""
    moved = kernel.pid_netns.get(pid)
    if moved is not None and moved in kernel.namespaces:
        return kernel.namespaces[moved]
    for ns in kernel.namespaces.values():
        for socks in ns.sockets.values():
            if any(s.pid == pid for s in socks):
                return ns
    return None


# ---------------------------------------------------------------------------------------
# RTM_GETNSID


def rtnl_net_getid(req: Request) -> Reply:
    off = req.payload_offset
    if req.hdr.len - 16 < 1:
        raise KernelError(E.EINVAL)
    tb, err, _ = parse_attrs(req.buf, off + RTGENMSG, req.end, RTNL_NET_POLICY, NETNSA_MAX,
                             hdr_offset=req.hdr.offset)
    if err is not None:
        return err
    net, kernel = req.netns, req.kernel

    def u32(t: int) -> int:
        v: int = struct.unpack_from("=i", req.buf, tb[t].start)[0]
        return v

    def bad(t: int) -> KernelError:
        return KernelError(E.ENOENT if t == NETNSA_NSID else E.ESRCH,
                           "Peer netns reference is invalid",
                           offset=tb[t].offset - req.hdr.offset)
    peer: NetNamespace | None
    if NETNSA_PID in tb:
        peer = get_net_ns_by_pid(kernel, u32(NETNSA_PID))
        if peer is None:
            raise bad(NETNSA_PID)
    elif NETNSA_FD in tb:
        peer = get_net_ns_by_fd(req, u32(NETNSA_FD))   # None: a real namespace
    elif NETNSA_NSID in tb:
        peer = _ids(net).get(u32(NETNSA_NSID))
        if peer is None:
            raise bad(NETNSA_NSID)
    else:
        raise KernelError(E.EINVAL, "Peer netns reference is missing")
    target, current = net, None
    if NETNSA_TARGET_NSID in tb:
        other = _ids(net).get(u32(NETNSA_TARGET_NSID))
        if other is None:
            raise KernelError(E.ENOENT, "Target netns reference is invalid",
                              offset=tb[NETNSA_TARGET_NSID].offset - req.hdr.offset)
        target = other
        current = peernet2id(target, net)
    nsid = peernet2id(target, peer) if peer is not None else NETNSA_NSID_NOT_ASSIGNED
    req.unicast(_fill(RTM_NEWNSID, req.hdr.seq, req.sock.portid, 0, nsid, current))
    return Reply()


def rtnl_net_dumpid(req: Request) -> object:
    seq, portid = req.hdr.seq, req.sock.portid
    ids = sorted(_ids(req.netns).items())
    return req.start_dump(_fill(RTM_NEWNSID, seq, portid, NLM_F_MULTI, nsid) for nsid, _ in ids)


def rtnl_net_newid(req: Request) -> Reply:
    """``rtnl_net_newid`` (``ip netns set NAME NSID|auto``): the peer by NETNSA_PID, else
    NETNSA_FD; ``alloc_netid`` takes exactly the id asked for, or the lowest free one for a
    negative id; RTM_NEWNSID goes to RTNLGRP_NSID with the request's port id and seq."""
    tb, err, _ = parse_attrs(req.buf, req.payload_offset + RTGENMSG, req.end, RTNL_NET_POLICY,
                             NETNSA_MAX, hdr_offset=req.hdr.offset)
    if err is not None:
        return err
    if NETNSA_NSID not in tb:
        raise KernelError(E.EINVAL, "nsid is missing")
    net = req.netns

    def s32(t: int) -> int:
        v: int = struct.unpack_from("=i", req.buf, tb[t].start)[0]
        return v

    def at(t: int) -> int:
        return tb[t].offset - req.hdr.offset
    peer: NetNamespace | None
    if NETNSA_PID in tb:
        ref, missing = NETNSA_PID, E.ESRCH          # find_task_by_vpid found nothing
        peer = get_net_ns_by_pid(req.kernel, s32(NETNSA_PID) & 0xFFFFFFFF)
    elif NETNSA_FD in tb:
        ref, missing = NETNSA_FD, E.EINVAL          # not an emulated namespace's fd
        peer = get_net_ns_by_fd(req, s32(NETNSA_FD) & 0xFFFFFFFF)
    else:
        raise KernelError(E.EINVAL, "Peer netns reference is missing")
    if peer is None:
        raise KernelError(missing, "Peer netns reference is invalid", offset=at(ref))
    if peernet2id(net, peer) >= 0:
        raise KernelError(E.EEXIST, "Peer netns already has a nsid assigned", offset=at(ref))
    ids, nsid = _ids(net), s32(NETNSA_NSID)
    if nsid >= 0 and nsid in ids:                   # idr_alloc(nsid, nsid + 1): -ENOSPC
        raise KernelError(E.EEXIST, "The specified nsid is already used",
                          offset=at(NETNSA_NSID))
    if nsid < 0:
        nsid = 0
        while nsid in ids:
            nsid += 1
    ids[nsid] = peer
    rtnl_net_notifyid(net, RTM_NEWNSID, nsid, req.sock.portid, req.hdr.seq)
    return Reply()


# ---------------------------------------------------------------------------------------
# moving a device


def dev_change_net_namespace(dev: NetDevice, net: NetNamespace, pat: str | None = None,
                             new_ifindex: int = 0) -> None:
    """``__dev_change_net_namespace``: the checks in the kernel's order, then close the device,
    let every subsystem drop it as on unregister (addresses, routes, offloaded SAs, bond or
    bridge membership), RTM_DELLINK in the old namespace with IFLA_NEW_NETNSID and
    IFLA_NEW_IFINDEX, and register it in ``net`` — ifindex kept unless taken there, down,
    no addresses — with RTM_NEWLINK. Raises KernelError."""
    old = link.dev_net(dev)
    if link.netns_immutable(dev):
        raise KernelError(E.EINVAL, "The interface netns is immutable")
    if net is old:
        return
    name = dev.name
    if net.links.by_name(name) is not None:
        if not pat:
            raise KernelError(E.EEXIST,
                              "An interface with the same name exists in the target netns")
        if "%" in pat:
            name = link.alloc_name(net.links, pat)
        elif link.valid_name(pat) and net.links.by_name(pat) is None:
            name = pat
        else:
            raise KernelError(E.EEXIST, f"Unable to use '{pat}' for the new interface name")
    reserve = True                   # dev_index_reserve(net, index): xa_insert
    if new_ifindex:
        if net.links.by_index(new_ifindex) is not None:
            raise KernelError(E.EBUSY,
                              f"The ifindex {new_ifindex} is not available in the target netns")
    elif net.links.by_index(dev.ifindex) is None:
        new_ifindex = dev.ifindex
    else:                            # taken there: the cyclic allocator's next
        reserve = False
        new_ifindex = net.links.last_index + 1
        while net.links.by_index(new_ifindex) is not None:
            new_ifindex += 1
    # veth_close turns the peer's carrier off, but linkwatch announces that only once the
    # move is done (the peer's NEWLINK then already shows where this end went)
    peer = dev.peer if dev.kind == "veth" and dev.up else None
    lost_peer_carrier = False
    if peer is not None:
        dev.defer_peer_carrier = True
        try:
            link.dev_close(dev)
        finally:
            dev.defer_peer_carrier = False
        lost_peer_carrier = peer.netns is not None and peer.set_carrier(False)
    link.dev_close(dev)
    dev.ever_up = False              # dev_shutdown: the qdisc is noop again
    if dev.master is not None:       # NETDEV_UNREGISTER: the bond or bridge lets go
        try:
            link.del_slave(dev.master, dev)
        except KernelError:
            dev.master = None
    netdev_unregister(dev)
    old.links.unregister(dev)        # NETDEV_UNREGISTER: routes, offloaded SAs
    new_nsid = peernet2id_alloc(old, net)
    old.kernel.multicast(old, NETLINK_ROUTE, link.RTNLGRP_LINK,
                         link.fill_ifinfo(dev, link.RTM_DELLINK, 0, 0, change=0xFFFFFFFF,
                                     new_nsid=new_nsid, new_ifindex=new_ifindex))
    if name != dev.name:
        dev.name = name
    net.links.register(dev, new_ifindex, reserve=reserve)
    link.rtmsg_ifinfo(dev, link.RTM_NEWLINK, change=0xFFFFFFFF)
    if peer is not None and lost_peer_carrier:   # linkwatch_do_dev → netdev_state_change
        link.rtmsg_ifinfo(peer)
        call_netdevice_notifiers("NETDEV_CHANGE", peer)


def default_device_exit_net(ns: NetNamespace) -> None:
    """A namespace going away (``xfrmd ctl netns del``): hardware ports go back to the
    ``default`` namespace (``default_device_exit_net``: the name kept, else dev<ifindex>,
    else dev%d); devices made through rtnetlink are deleted, a veth's peer elsewhere
    with it (``default_device_exit_batch``)."""
    kernel = ns.kernel
    home = kernel.namespaces.get("default")
    doomed = []
    for dev in list(ns.links):
        if dev.kind == "loopback":
            continue
        if link.link_ops(dev) is not None or home is None or home is ns:
            doomed.append(dev)
            continue
        pat = None
        if home.links.by_name(dev.name) is not None:
            pat = f"dev{dev.ifindex}"
            if home.links.by_name(pat) is not None:
                pat = "dev%d"
        dev_change_net_namespace(dev, home, pat)
    devs: list[NetDevice] = []
    for dev in doomed:
        if dev in devs:
            continue
        devs.append(dev)
        peer = dev.peer if dev.kind == "veth" else None
        if peer is not None and peer.netns is not None and peer not in devs:
            devs.append(peer)
    if devs:
        link.unregister_many(devs)


# net_ns_init's rows (family, msgtype, doit, dumpit)
RTNL_MSG_HANDLERS = (
    (0, RTM_NEWNSID, rtnl_net_newid, None),
    (0, RTM_GETNSID, rtnl_net_getid, rtnl_net_dumpid),
)
