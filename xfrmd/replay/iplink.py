"""The `ip link` / `ip addr` subset scripts need around xfrm commands (iproute2 6.1
ip/iplink.c ``iplink_modify``/``iplink_parse``, link_veth.c, iplink_bond.c,
ip/ipaddress.c ``ipaddr_modify``): create, change and delete links, add and delete
addresses. Listing links and addresses is not replayed (use `xfrmd run -- ip link`)."""
from __future__ import annotations

import struct

from netlink_codec.netlink import (NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST)

from .args import (AF_INET, AF_UNSPEC, Argv, IpExit, die, duparg, duparg2, get_addr,
                   get_prefix, get_u32, invarg, matches)
from .ipxfrm import Ctx

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
IFF_UP = 1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA = 18, 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST = 1, 2, 3, 4
BOND_MODES = ["balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
              "balance-tlb", "balance-alb"]
BOND_XMIT = ["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"]
BOND_LACP = ["slow", "fast"]
BOND_AD_SELECT = ["stable", "bandwidth", "count"]
IFLA_BOND_MODE, IFLA_BOND_MIIMON, IFLA_BOND_XMIT_HASH_POLICY = 1, 3, 14
IFLA_BOND_AD_LACP_RATE, IFLA_BOND_AD_SELECT = 21, 22
IFNAMSIZ = 16


class Msg:
    """A request buffer with libnetlink's addattr_l / addattr_nest semantics."""

    def __init__(self, msg_type: int, flags: int, fixed: bytes):
        self.buf = bytearray(struct.pack("<IHHII", 0, msg_type, flags, 0, 0)) + fixed
        self._sync()

    def _sync(self):
        struct.pack_into("<I", self.buf, 0, len(self.buf))

    def addattr(self, t: int, payload: bytes) -> None:
        self.buf += bytes(-len(self.buf) % 4)
        n = 4 + len(payload)
        self.buf += struct.pack("<HH", n, t) + payload + bytes(-n % 4)
        self._sync()

    def nest(self, t: int) -> int:
        self.buf += bytes(-len(self.buf) % 4)
        start = len(self.buf)
        self.buf += struct.pack("<HH", 4, t)
        self._sync()
        return start

    def nest_end(self, start: int) -> None:
        struct.pack_into("<H", self.buf, start, len(self.buf) - start)

    @property
    def ifi(self):
        """(flags, change, index) of the ifinfomsg at the head of the payload."""
        index, flags, change = struct.unpack_from("<iII", self.buf, 20)
        return flags, change, index

    def set_ifi(self, flags: int, change: int, index: int) -> None:
        struct.pack_into("<iII", self.buf, 20, index, flags, change)


def _ifinfomsg(family: int) -> bytes:
    return struct.pack("<BBHiII", family, 0, 0, 0, 0, 0)


def _check_ifname(name: str) -> bool:
    return not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name)


def _index(opts: list[str], word: str, what: str) -> int:
    for i, o in enumerate(opts):
        if o == word:
            return i
    invarg(f'invalid {what}', word)


def iplink_parse(ctx: Ctx, a: Argv, m: Msg, create: bool) -> tuple[int, str | None]:
    """Returns (words consumed, type). Appends IFLA_* attributes to ``m``."""
    start = a.argc
    name = dev = link = None
    mtu = None
    kind = None
    flags, change, index = m.ifi
    while a.argc > 0:
        w = a.cur
        if w == "up":
            change |= IFF_UP
            flags |= IFF_UP
        elif w == "down":
            change |= IFF_UP
            flags &= ~IFF_UP
        elif w == "name":
            a.next()
            if name:
                duparg("name", a.cur)
            if _check_ifname(a.cur):
                invarg('"name" not a valid ifname', a.cur)
            name = a.cur
            if not dev:
                dev = name
        elif matches(w, "link"):
            a.next()
            link = a.cur
        elif w == "mtu":
            a.next()
            if mtu is not None:
                duparg("mtu", a.cur)
            v = get_u32(a.cur)
            if v is None or v > 0x7FFFFFFF:
                invarg('Invalid "mtu" value\n', a.cur)
            mtu = v
            m.addattr(IFLA_MTU, struct.pack("<I", mtu))
        elif matches(w, "master"):
            a.next()
            ifindex = ctx.ll_name_to_index(a.cur)
            if not ifindex:
                invarg("Device does not exist\n", a.cur)
            m.addattr(IFLA_MASTER, struct.pack("<I", ifindex))
        elif matches(w, "nomaster"):
            m.addattr(IFLA_MASTER, struct.pack("<I", 0))
        elif matches(w, "address"):
            a.next()
            try:
                mac = bytes(int(x, 16) for x in a.cur.split(":"))
            except ValueError:
                die(f'"{a.cur}" is invalid lladdr.\n', 1)
            m.addattr(IFLA_ADDRESS, mac)
        elif matches(w, "type"):
            a.next()
            kind = a.cur
            a.advance()
            break
        else:
            if matches(w, "help"):
                raise IpExit("Usage: ip link add … (see ip-link(8))\n", -1)
            if w == "dev":
                a.next()
            if dev != name:
                duparg2("dev", a.cur)
            if _check_ifname(a.cur):
                invarg('"dev" not a valid ifname', a.cur)
            dev = a.cur
        a.advance()
    consumed = start - a.argc
    if not name:
        name = dev
    elif not dev:
        dev = name
    if not create:
        if not dev:
            die('Not enough information: "dev" argument is required.\n', -1)
        index = ctx.ll_name_to_index(dev)
        if not index:
            raise IpExit(f'Cannot find device "{dev}"\n', 1)
        if name == dev:
            name = None
    else:
        if name != dev:
            die('both "name" and "dev" cannot be used when creating devices.\n', -1)
        if link:
            li = ctx.ll_name_to_index(link)
            if not li:
                raise IpExit(f'Cannot find device "{link}"\n', 1)
            m.addattr(IFLA_LINK, struct.pack("<I", li))
    m.set_ifi(flags, change, index)
    if name:
        m.addattr(IFLA_IFNAME, name.encode() + b"\0")
    return consumed, kind


def _bond_opts(a: Argv, m: Msg) -> None:
    table = {"mode": (IFLA_BOND_MODE, BOND_MODES, "mode"),
             "xmit_hash_policy": (IFLA_BOND_XMIT_HASH_POLICY, BOND_XMIT, "xmit_hash_policy"),
             "lacp_rate": (IFLA_BOND_AD_LACP_RATE, BOND_LACP, "lacp_rate"),
             "ad_select": (IFLA_BOND_AD_SELECT, BOND_AD_SELECT, "ad_select")}
    while a.argc > 0:
        w = a.cur
        if w in table:
            t, names, what = table[w]
            a.next()
            v = names.index(a.cur) if a.cur in names else get_u32(a.cur)
            if v is None:
                invarg(f"invalid {what}", a.cur)
            m.addattr(t, bytes([v & 0xFF]))
        elif w == "miimon":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("invalid miimon", a.cur)
            m.addattr(IFLA_BOND_MIIMON, struct.pack("<I", v))
        else:
            raise IpExit(f'bond: unknown command "{w}"?\n', -1)
        a.advance()


def iplink_modify(ctx: Ctx, nl, cmd: int, flags: int, a: Argv) -> int:
    m = Msg(cmd, NLM_F_REQUEST | flags, _ifinfomsg(ctx.preferred_family))
    create = bool(flags & NLM_F_CREATE)
    _, kind = iplink_parse(ctx, a, m, create)
    if kind:
        li = m.nest(IFLA_LINKINFO)
        m.addattr(IFLA_INFO_KIND, kind.encode())
        if a.argc > 0:
            if kind == "veth":
                data = m.nest(IFLA_INFO_DATA)
                if a.cur != "peer":
                    raise IpExit("Usage: ip link <options> type veth [peer <options>]\n", -1)
                outer = m.ifi
                m.set_ifi(0, 0, 0)
                peer = m.nest(VETH_INFO_PEER)
                m.buf += bytes(16)   # the peer's ifinfomsg, filled below
                m._sync()
                a.advance()
                _, ptype = iplink_parse(ctx, a, m, create)
                if ptype:
                    duparg("type", ptype)
                pf, pc, pi = m.ifi
                struct.pack_into("<iII", m.buf, peer + 4 + 4, pi, pf, pc)
                m.set_ifi(*outer)
                m.nest_end(peer)
                m.nest_end(data)
            elif kind == "bond":
                data = m.nest(IFLA_INFO_DATA)
                _bond_opts(a, m)
                m.nest_end(data)
            elif kind == "dummy":
                # dummy's link_util has no option parser: ip adds an empty INFO_DATA nest
                # and ignores the words
                m.nest_end(m.nest(IFLA_INFO_DATA))
            elif kind == "bridge":
                raise IpExit(f'xfrmd replay: bridge options ("{a.cur}") are not replayed\n', 1)
            else:
                raise IpExit(f"xfrmd replay: options of link type {kind!r} are not "
                             "supported\n", 1)
        m.nest_end(li)
    elif create:
        raise IpExit('Not enough information: "type" argument is required\n', 1)
    _have_newlink(nl)
    nl.talk(m.buf)
    return 0


def _have_newlink(nl) -> None:
    """iplink_have_newlink: the empty RTM_NEWLINK probe ip 6.1 sends before every change."""
    probe = bytearray(struct.pack("<IHHII", 32, RTM_NEWLINK, NLM_F_REQUEST | 4, 0, 0)
                      + _ifinfomsg(AF_UNSPEC))
    nl.send(probe)
    nl.sock.recv()


def do_iplink(ctx: Ctx, nl, words: list[str]) -> int:
    if not words:
        raise IpExit("xfrmd replay: listing links is not replayed; run `xfrmd run -- ip link`\n",
                     1)
    c, a = words[0], Argv(words, 1)
    if matches(c, "add"):
        return iplink_modify(ctx, nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, a)
    if matches(c, "set") or matches(c, "change"):
        return iplink_modify(ctx, nl, RTM_NEWLINK, 0, a)
    if matches(c, "replace"):
        return iplink_modify(ctx, nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_REPLACE, a)
    if matches(c, "delete"):
        return iplink_modify(ctx, nl, RTM_DELLINK, 0, a)
    if matches(c, "show") or matches(c, "lst") or matches(c, "list"):
        raise IpExit("xfrmd replay: listing links is not replayed; run `xfrmd run -- ip link`\n",
                     1)
    raise IpExit(f'Command "{c}" is unknown, try "ip link help".\n', -1)


_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


def ipaddr_modify(ctx: Ctx, nl, cmd: int, flags: int, a: Argv) -> int:
    family = ctx.preferred_family
    attrs: list[tuple[int, bytes]] = []
    d = None
    lcl = peer = None
    lcl_arg = None
    local_len = peer_len = brd_len = 0
    prefixlen = 0
    scope = None
    while a.argc > 0:
        w = a.cur
        if w in ("peer", "remote"):
            a.next()
            if peer_len:
                duparg("peer", a.cur)
            peer = get_prefix(a.cur, family)
            peer_len = peer.bytelen
            family = family or peer.family
            attrs.append((IFA_ADDRESS, peer.data[:peer.bytelen]))
            prefixlen = peer.bitlen
        elif matches(w, "broadcast") or w == "brd":
            a.next()
            if brd_len:
                duparg("broadcast", a.cur)
            if a.cur == "+":
                brd_len = -1
            elif a.cur == "-":
                brd_len = -2
            else:
                b = get_addr(a.cur, family)
                family = family or b.family
                attrs.append((IFA_BROADCAST, b.data[:b.bytelen]))
                brd_len = b.bytelen
        elif w == "scope":
            a.next()
            s = _SCOPES.get(a.cur, get_u32(a.cur))
            if s is None or s > 255:
                invarg("invalid scope value.", a.cur)
            scope = s
        elif w == "dev":
            a.next()
            d = a.cur
        elif w == "label":
            a.next()
            attrs.append((IFA_LABEL, a.cur.encode() + b"\0"))
        else:
            if w == "local":
                a.next()
            if matches(a.cur, "help"):
                raise IpExit("Usage: ip address {add|change|replace} IFADDR dev IFNAME …\n", -1)
            if local_len:
                duparg2("local", a.cur)
            lcl_arg = a.cur
            lcl = get_prefix(a.cur, family)
            family = family or lcl.family
            attrs.append((IFA_LOCAL, lcl.data[:lcl.bytelen]))
            local_len = lcl.bytelen
        a.advance()
    if d is None:
        raise IpExit('Not enough information: "dev" argument is required.\n', 1)
    if peer_len == 0 and local_len:
        if cmd == RTM_DELADDR and lcl.family == AF_INET and "/" not in lcl_arg:
            raise IpExit("xfrmd replay: wildcard address deletion is not replayed\n", 1)
        peer = lcl
        attrs.append((IFA_ADDRESS, lcl.data[:lcl.bytelen]))
    if prefixlen == 0 and lcl is not None:
        prefixlen = lcl.bitlen
    if brd_len < 0 and cmd != RTM_DELADDR:
        if family != AF_INET:
            raise IpExit("Broadcast can be set only for IPv4 addresses\n", 1)
        if peer.bitlen <= 30:
            v = int.from_bytes(peer.data[:4], "big")
            host = (1 << (32 - peer.bitlen)) - 1
            v = v | host if brd_len == -1 else v & ~host
            attrs.append((IFA_BROADCAST, v.to_bytes(4, "big")))
    if scope is None:
        scope = 0 if cmd == RTM_DELADDR else (
            254 if lcl is not None and lcl.family == AF_INET and lcl.data[0] == 127 else 0)
    index = ctx.ll_name_to_index(d)
    if not index:
        raise IpExit(f'Cannot find device "{d}"\n', 1)
    m = Msg(cmd, NLM_F_REQUEST | flags,
            struct.pack("<BBBBi", family, prefixlen & 0xFF, 0, scope, index))
    for t, p in attrs:
        m.addattr(t, p)
    nl.talk(m.buf)
    return 0


def do_ipaddr(ctx: Ctx, nl, words: list[str]) -> int:
    if not words:
        raise IpExit("xfrmd replay: listing addresses is not replayed; run "
                     "`xfrmd run -- ip addr`\n", 1)
    c, a = words[0], Argv(words, 1)
    if matches(c, "add"):
        return ipaddr_modify(ctx, nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, a)
    if matches(c, "change") or c == "chg":
        return ipaddr_modify(ctx, nl, RTM_NEWADDR, NLM_F_REPLACE, a)
    if matches(c, "replace"):
        return ipaddr_modify(ctx, nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, a)
    if matches(c, "delete"):
        return ipaddr_modify(ctx, nl, RTM_DELADDR, 0, a)
    raise IpExit("xfrmd replay: listing addresses is not replayed; run "
                 "`xfrmd run -- ip addr`\n", 1)
