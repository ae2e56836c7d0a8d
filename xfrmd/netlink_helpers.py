"""Small client-side readers of the SAD and SPD (for tests and helpers): dump over a server
socket and decode the fields people check."""
from __future__ import annotations

import ipaddress
import struct

from netlink_codec import netlink as N
from netlink_codec import xfrm as X


def _dump(path: str, netns: str, msg_type: int, protocol: int = N.NETLINK_XFRM,
          payload: bytes = b"") -> list[bytes]:
    # start-up time: the client (and trio with it) loads only when a dump runs
    from .client import NetlinkSocket
    out = []
    with NetlinkSocket(protocol, netns, path=path) as s:
        s.send(N.encode_msg(msg_type, N.NLM_F_REQUEST | N.NLM_F_DUMP, 1, 0, payload))
        while True:
            d = s.recv()
            done = False
            for h in N.split_messages(d):
                if h.type in (N.NLMSG_DONE, N.NLMSG_ERROR):
                    done = True
                elif h.type != N.NLMSG_NOOP:
                    out.append(bytes(d[h.offset:h.offset + h.len]))
            if done:
                return out


def _addr(raw: bytes, family: int) -> str:
    return str(ipaddress.ip_address(raw[:4] if family == X.AF_INET else raw[:16]))


def _attrs(msg: bytes, start: int) -> dict:
    return {ra.type: bytes(msg[ra.start:ra.end]) for ra in N.iter_attrs(msg, start, len(msg))}


RTM_GETLINK, IFLA_IFNAME, IFINFOMSG_SIZE = 18, 3, 16


def link_names(path: str, netns: str) -> dict[int, str]:
    """ifindex → name of the namespace's links (an RTM_GETLINK dump, as ``ip link`` makes)."""
    names = {}
    for m in _dump(path, netns, RTM_GETLINK, N.NETLINK_ROUTE, bytes(IFINFOMSG_SIZE)):
        (ifindex,) = struct.unpack_from("=i", m, 16 + 4)
        name = _attrs(m, 16 + IFINFOMSG_SIZE).get(IFLA_IFNAME, b"")
        names[ifindex] = name.split(b"\0")[0].decode()
    return names


def dump_states(path: str, netns: str) -> list[dict]:
    """The SAD, one dict per SA. ``offload`` is None for a software SA, else
    ``{"dev": "eth0", "type": "crypto"|"packet", "dir": "in"|"out", "ifindex", "flags"}``;
    ``encap`` is None, or XFRMA_ENCAP as ``{"type": 2, "sport": 4500, "dport": 4500}``."""
    out = []
    names = None
    for m in _dump(path, netns, X.XfrmMsg.GETSA):
        x = X.XfrmUsersaInfo.decode(m, 16)
        a = _attrs(m, 16 + X.XfrmUsersaInfo.size())
        algs = {}
        for t, name in ((X.Xfrma.ALG_AEAD, "aead"), (X.Xfrma.ALG_CRYPT, "enc"),
                        (X.Xfrma.ALG_AUTH_TRUNC, "auth"), (X.Xfrma.ALG_AUTH, "auth")):
            if t in a and name not in algs:
                raw = a[t]
                bits = struct.unpack_from("=I", raw, 64)[0]
                head = 72 if t in (X.Xfrma.ALG_AEAD, X.Xfrma.ALG_AUTH_TRUNC) else 68
                algs[name] = (raw[:64].split(b"\0")[0].decode(), raw[head:head + bits // 8].hex())
        off = None
        if X.Xfrma.OFFLOAD_DEV in a:
            ifindex, flags = struct.unpack_from("=iB", a[X.Xfrma.OFFLOAD_DEV])
            if names is None:
                names = link_names(path, netns)
            off = {"dev": names.get(ifindex, f"if{ifindex}"), "ifindex": ifindex, "flags": flags,
                   "type": "packet" if flags & X.XFRM_OFFLOAD_PACKET else "crypto",
                   "dir": "in" if flags & X.XFRM_OFFLOAD_INBOUND else "out"}
        encap = None
        if X.Xfrma.ENCAP in a:
            e = X.XfrmEncapTmpl.decode(a[X.Xfrma.ENCAP], 0)
            encap = {"type": e.encap_type, "sport": e.encap_sport, "dport": e.encap_dport}
        out.append({"src": _addr(bytes(x.saddr), x.family), "dst": _addr(bytes(x.id.daddr), x.family),
                    "spi": x.id.spi, "proto": x.id.proto, "mode": x.mode, "reqid": x.reqid, "flags": x.flags,
                    "algs": algs, "offload": off, "encap": encap,
                    "lft": x.lft.as_dict() if hasattr(x.lft, "as_dict") else None})
    return out


def dump_policies(path: str, netns: str) -> list[dict]:
    out = []
    for m in _dump(path, netns, X.XfrmMsg.GETPOLICY):
        p = X.XfrmUserpolicyInfo.decode(m, 16)
        a = _attrs(m, 16 + X.XfrmUserpolicyInfo.size())
        off = None
        if X.Xfrma.OFFLOAD_DEV in a:        # packet offload of a policy
            ifindex, flags = struct.unpack_from("=iB", a[X.Xfrma.OFFLOAD_DEV])
            off = {"ifindex": ifindex, "flags": flags}
        fam = p.sel.family
        out.append({"src": f"{_addr(bytes(p.sel.saddr), fam)}/{p.sel.prefixlen_s}",
                    "dst": f"{_addr(bytes(p.sel.daddr), fam)}/{p.sel.prefixlen_d}",
                    "dir": p.dir, "priority": p.priority, "index": p.index,
                    "action": p.action, "offload": off})
    return out
