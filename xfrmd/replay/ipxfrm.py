"""What iproute2's ip/ipxfrm.c shares between ``ip xfrm state`` and ``ip xfrm policy``:
parsing of IDs, selectors, modes and lifetimes, and the printers of SAs and policies.

Written from the behaviour of iproute2 6.1 (the version on Debian 12), plus the newer
attributes current iproute2 prints (SA direction, packet offload, IP-TFS, pcpu); each such
addition is listed in docs/replay.md.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any, Callable

from netlink_codec import xfrm as X

from .args import (AF_INET, AF_INET6, AF_UNSPEC, Argv, IpExit, addr_n2a, die, get_addr_1,
                   get_prefix, get_u8, get_u16, get_u32, get_u64, invarg, matches, missarg,
                   strtoul)

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_GRE = 1, 6, 17, 47
IPPROTO_ROUTING, IPPROTO_ESP, IPPROTO_AH, IPPROTO_ICMPV6 = 43, 50, 51, 58
IPPROTO_DSTOPTS, IPPROTO_MH, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_COMP = 60, 135, 132, 33, 108
IPSEC_PROTO_ANY = 255

XFRMPROTO = [("esp", IPPROTO_ESP), ("ah", IPPROTO_AH), ("comp", IPPROTO_COMP),
             ("route2", IPPROTO_ROUTING), ("hao", IPPROTO_DSTOPTS),
             ("ipsec-any", IPSEC_PROTO_ANY)]
ALGOTYPES = [("enc", X.Xfrma.ALG_CRYPT), ("auth", X.Xfrma.ALG_AUTH), ("comp", X.Xfrma.ALG_COMP),
             ("aead", X.Xfrma.ALG_AEAD), ("auth-trunc", X.Xfrma.ALG_AUTH_TRUNC)]
MODES = [("transport", 0), ("tunnel", 1), ("ro", 2), ("in_trigger", 3), ("beet", 4),
         ("iptfs", 5)]
XFRM_MODE_NAMES = {0: "transport", 1: "tunnel", 2: "ro", 3: "in_trigger", 4: "beet",
                   5: "iptfs"}


def _value_of(table: list, name: str) -> int:
    """The value ``name`` has in a (name, value) table, else -1."""
    return next((int(v) for n, v in table if n == name), -1)


def _name_of(table: list, value: int) -> str:
    """The name of ``value`` in a (name, value) table, else the number."""
    return next((n for n, v in table if v == value), str(value))


def xfrmproto_getbyname(name: str) -> int:
    return _value_of(XFRMPROTO, name)


def strxf_xfrmproto(proto: int) -> str:
    return _name_of(XFRMPROTO, proto)


def algotype_getbyname(name: str) -> int:
    return _value_of(ALGOTYPES, name)


def strxf_algotype(t: int) -> str:
    return _name_of(ALGOTYPES, t)


# a command of ``ip xfrm state|policy``: fn(ctx, nl, argv) -> exit status
Command = Callable[["Ctx", Any, Argv], int]


def do_command(ctx: Ctx, nl: Any, words: list[str], commands: tuple[tuple[tuple[str, ...], Command], ...],
               default: Command, obj: str, usage: str) -> int:
    """``ip xfrm OBJ words…`` as do_xfrm_state / do_xfrm_policy dispatch it: the first of
    ``commands`` ((names, fn), in order) with a name that ``words[0]`` abbreviates; no word
    at all: ``default`` (list)."""
    if not words:
        return default(ctx, nl, Argv([]))
    c, a = words[0], Argv(words, 1)
    for names, fn in commands:
        if any(matches(c, n) for n in names):
            return fn(ctx, nl, a)
    if matches(c, "help"):
        raise IpExit(usage, -1)
    raise IpExit(f'Command "{c}" is unknown, try "ip xfrm {obj} help".\n', -1)


def is_ipsec(proto: int) -> bool:
    return proto in (IPPROTO_ESP, IPPROTO_AH, IPPROTO_COMP)


def is_ro(proto: int) -> bool:
    return proto in (IPPROTO_ROUTING, IPPROTO_DSTOPTS)


# -- /etc/protocols, as getprotobyname/getprotobynumber read it ----------------------------

_PROTOCOLS: tuple[dict, dict] | None = None


def _protocols() -> tuple[dict, dict]:
    global _PROTOCOLS
    if _PROTOCOLS is None:
        by_name, by_num = {}, {}
        try:
            with open("/etc/protocols") as f:
                for line in f:
                    words = line.split("#", 1)[0].split()
                    if len(words) >= 2 and words[1].isdigit():
                        num = int(words[1])
                        for alias in [words[0]] + words[2:]:
                            by_name.setdefault(alias, num)
                        by_num.setdefault(num, words[0])
        except OSError:
            pass
        _PROTOCOLS = (by_name, by_num)
    return _PROTOCOLS


def strxf_proto(proto: int) -> str:
    return _protocols()[1].get(proto, str(proto))


def strxf_share(share: int) -> str:
    return {0: "any", 1: "session", 2: "user", 3: "unique"}.get(share, str(share))


def strxf_ptype(t: int) -> str:
    return {0: "main", 1: "sub"}.get(t, str(t))


def strxf_mask8(mask: int) -> str:
    return format(mask & 0xFF, "08b")


def strxf_limit(v: int) -> str:
    return "(INF)" if v == X.XFRM_INF else str(v)


def strxf_time(t: int) -> str:
    if t == 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class Filter:
    """``struct xfrm_filter`` (the client-side list filter and the masks parsers record)."""

    def __init__(self):
        self.use = False
        self.xsinfo = X.XfrmUsersaInfo()
        self.xpinfo = X.XfrmUserpolicyInfo()
        self.id_src_mask = self.id_dst_mask = self.id_proto_mask = self.id_spi_mask = 0
        self.mode_mask = self.reqid_mask = self.state_flags_mask = 0
        self.sel_src_mask = self.sel_dst_mask = self.sel_dev_mask = 0
        self.upspec_proto_mask = self.upspec_sport_mask = self.upspec_dport_mask = 0
        self.dir_mask = self.index_mask = self.action_mask = self.priority_mask = 0
        self.policy_flags_mask = self.ptype_mask = self.ptype = 0
        self.filter_socket = False


class Ctx:
    """Per-command state of `ip`: options, output, device name lookups."""

    def __init__(self, *, preferred_family=AF_UNSPEC, show_stats=0, oneline=False,
                 name_to_index=None, index_to_name=None, iproute2: str = "6.1"):
        self.preferred_family = preferred_family
        # which `ip` to be: "6.1" (Debian 12; newer syntax accepted as an extension) or
        # "6.15" (Debian 13: its parser, its messages, its printing) — docs/replay.md
        self.iproute2 = iproute2
        self.show_stats = show_stats
        self.oneline = oneline
        self.sl = "\\" if oneline else "\n"
        self._n2i = name_to_index or (lambda n: 0)
        self._i2n = index_to_name or (lambda i: None)
        self.out: list[tuple[str, str]] = []   # ("out"|"err", text) in the order written
        self.filter = Filter()

    def w(self, s: str) -> None:
        self.out.append(("out", s))

    def err(self, s: str) -> None:
        self.out.append(("err", s))

    def ll_name_to_index(self, name: str) -> int:
        return self._n2i(name) or 0

    def ll_index_to_name(self, idx: int) -> str:
        return self._i2n(idx) or f"if{idx}"


def addr_bytes(a) -> bytes:
    return bytes(a)


# -- parsers -------------------------------------------------------------------------------

def parse_mark(ctx: Ctx, a: Argv) -> X.XfrmMark:
    """xfrm_parse_mark: ``mark MARK [mask MASK]`` (cursor on "mark")."""
    mark = X.XfrmMark()
    a.next()
    v = get_u32(a.cur)
    if v is None:
        invarg("MARK value is invalid\n", a.cur)
    mark.v = v
    if a.argc > 1:
        a.next()
    else:
        mark.m = 0xFFFFFFFF
        return mark
    if a.cur == "mask":
        a.next()
        m = get_u32(a.cur)
        if m is None:
            invarg("MASK value is invalid\n", a.cur)
        mark.m = m
    else:
        mark.m = 0xFFFFFFFF
        a.prev()
    return mark


def parse_id(ctx: Ctx, a: Argv, saddr, xid, loose: bool) -> int:
    """xfrm_id_parse; returns the family found (0 if none). Fills ``saddr`` (XfrmAddress)
    and ``xid`` (XfrmId)."""
    start = a.argc
    family = 0
    src = dst = None
    f = ctx.filter
    while True:
        w = a.cur
        if w == "src":
            a.next()
            src = get_prefix(a.cur, ctx.preferred_family)
            if src.family == AF_UNSPEC:
                invarg('value after "src" has an unrecognized address family', a.cur)
            family = src.family
            ctypes.memmove(ctypes.addressof(saddr), src.data, 16)
            f.id_src_mask = src.bitlen
        elif w == "dst":
            a.next()
            dst = get_prefix(a.cur, ctx.preferred_family)
            if dst.family == AF_UNSPEC:
                invarg('value after "dst" has an unrecognized address family', a.cur)
            family = dst.family
            xid.daddr = X.XfrmAddress.of(dst.data)
            f.id_dst_mask = dst.bitlen
        elif w == "proto":
            a.next()
            p = xfrmproto_getbyname(a.cur)
            if p < 0:
                invarg("XFRM-PROTO value is invalid", a.cur)
            xid.proto = p
            f.id_proto_mask = 0xFF
        elif w == "spi":
            a.next()
            spi = get_u32(a.cur)
            if spi is None:
                invarg("SPI value is invalid", a.cur)
            xid.spi = spi
            f.id_spi_mask = 0xFFFFFFFF
        else:
            a.prev()
            break
        if not a.next_ok():
            break
        a.next()
    if src and dst and src.family and dst.family and src.family != dst.family:
        invarg('the same address family is required between values after "src" and "dst"', a.cur)
    if xid.spi and xid.proto:
        if is_ro(xid.proto):
            die(f'"spi" is invalid with XFRM-PROTO value "{strxf_xfrmproto(xid.proto)}"\n')
        if xid.proto == IPPROTO_COMP and xid.spi >= 0x10000:
            die(f'SPI value is too large with XFRM-PROTO value "{strxf_xfrmproto(xid.proto)}"\n')
    if not loose and xid.proto == 0:
        missarg("XFRM-PROTO")
    if a.argc == start:
        missarg("ID")
    return family


def parse_mode(a: Argv) -> int:
    for name, v in MODES[:5]:
        if 0 < len(a.cur) <= len(name) and name.startswith(a.cur):
            return v
    invarg("MODE value is invalid", a.cur)


def parse_encap_type(a: Argv) -> int:
    t = {"espinudp-nonike": 1, "espinudp": 2, "espintcp": 7}.get(a.cur)
    if t is None:
        invarg("ENCAP-TYPE value is invalid", a.cur)
    return t


def parse_reqid(a: Argv) -> int:
    v = get_u32(a.cur)
    if v is None:
        invarg("REQID value is invalid", a.cur)
    return v


def _upspec_parse(ctx: Ctx, a: Argv, sel) -> None:
    start = a.argc
    f = ctx.filter
    seen: set[str] = set()
    grekey = False
    while True:
        w = a.cur
        if w == "proto":
            a.next()
            if a.cur == "any":
                up = 0
            else:
                up = _protocols()[0].get(a.cur)
                if up is None:
                    up = get_u8(a.cur)
                    if up is None:
                        invarg("PROTO value is invalid", a.cur)
            sel.proto = up
            f.upspec_proto_mask = 0xFF
        elif w in ("sport", "dport", "type", "code"):
            # sport/type live in sel.sport, dport/code in sel.dport; type/code are one byte
            a.next()
            v = get_u16(a.cur)
            icmp = w in ("type", "code")
            if v is None or (icmp and v & ~0xFF):
                invarg(f'value after "{w}" is invalid', a.cur)
            port = "sport" if w in ("sport", "type") else "dport"
            setattr(sel, port, v)
            if v or icmp:
                setattr(sel, port + "_mask", 0xFFFF)
            setattr(f, f"upspec_{port}_mask", 0xFFFF)
            seen.add(w)
        elif w == "key":
            grekey = True
            a.next()
            if "." in a.cur:
                p = get_addr_1(a.cur, AF_INET)
                if p is None:
                    die(f'Error: an IP address is expected rather than "{a.cur}"\n')
                uval = int.from_bytes(p.data[:4], "big")
            else:
                uval = get_u32(a.cur)
                if uval is None:
                    die('Error: argument "{}" is wrong: value after "key" is invalid\n'
                        .format(a.cur), -1)
            sel.sport = uval >> 16
            sel.dport = uval & 0xFFFF
            sel.sport_mask = sel.dport_mask = 0xFFFF
            f.upspec_dport_mask = 0xFFFF
        else:
            a.prev()
            break
        if not a.next_ok():
            break
        a.next()
    if a.argc == start:
        missarg("UPSPEC")
    if seen & {"sport", "dport"} and sel.proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP,
                                                 IPPROTO_DCCP, 0):
        die(f'"sport" and "dport" are invalid with PROTO value "{strxf_proto(sel.proto)}"\n')
    if seen & {"type", "code"} and sel.proto not in (IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_MH):
        die(f'"type" and "code" are invalid with PROTO value "{strxf_proto(sel.proto)}"\n')
    if grekey and sel.proto != IPPROTO_GRE:
        die(f'"key" is invalid with PROTO value "{strxf_proto(sel.proto)}"\n')


def parse_selector(ctx: Ctx, a: Argv, sel) -> None:
    """xfrm_selector_parse into an XfrmSelector."""
    start = a.argc
    f = ctx.filter
    src = dst = None
    upspec_seen = False
    while True:
        w = a.cur
        if w == "src":
            a.next()
            src = get_prefix(a.cur, ctx.preferred_family)
            if src.family == AF_UNSPEC:
                invarg('value after "src" has an unrecognized address family', a.cur)
            sel.family = src.family
            sel.saddr = X.XfrmAddress.of(src.data)
            sel.prefixlen_s = src.bitlen
            f.sel_src_mask = src.bitlen
        elif w == "dst":
            a.next()
            dst = get_prefix(a.cur, ctx.preferred_family)
            if dst.family == AF_UNSPEC:
                invarg('value after "dst" has an unrecognized address family', a.cur)
            sel.family = dst.family
            sel.daddr = X.XfrmAddress.of(dst.data)
            sel.prefixlen_d = dst.bitlen
            f.sel_dst_mask = dst.bitlen
        elif w == "dev":
            a.next()
            if a.cur == "none":
                ifindex = 0
            else:
                ifindex = ctx.ll_name_to_index(a.cur)
                if ifindex <= 0:
                    invarg("DEV value is invalid", a.cur)
            sel.ifindex = ifindex
            f.sel_dev_mask = 0xFFFFFFFF
        else:
            if upspec_seen:
                a.prev()
                break
            upspec_seen = True
            _upspec_parse(ctx, a, sel)
        if not a.next_ok():
            break
        a.next()
    if src and dst and src.family and dst.family and src.family != dst.family:
        invarg('the same address family is required between values after "src" and "dst"', a.cur)
    if a.argc == start:
        missarg("SELECTOR")


_LIMITS = {"time-soft": "soft_add_expires_seconds", "time-hard": "hard_add_expires_seconds",
           "time-use-soft": "soft_use_expires_seconds",
           "time-use-hard": "hard_use_expires_seconds",
           "byte-soft": "soft_byte_limit", "byte-hard": "hard_byte_limit",
           "packet-soft": "soft_packet_limit", "packet-hard": "hard_packet_limit"}


def parse_lifetime(a: Argv, lft) -> None:
    field = _LIMITS.get(a.cur)
    if field is None:
        invarg("LIMIT value is invalid", a.cur)
    key = a.cur
    a.next()
    v = get_u64(a.cur)
    if v is None:
        invarg(f'value after "{key}" is invalid', a.cur)
    setattr(lft, field, v)


def sctx_bytes(s: str) -> bytes:
    """xfrm_sctx_parse: the XFRMA_SEC_CTX payload (doi 1, alg 1, NUL included)."""
    raw = s.encode() + b"\0"
    hdr = X.XfrmUserSecCtx(len=8 + len(raw), exttype=X.Xfrma.SEC_CTX, ctx_alg=1, ctx_doi=1,
                           ctx_len=len(raw))
    return hdr.encode() + raw


# -- printers --------------------------------------------------------------------------------

def selector_print(ctx: Ctx, sel, family: int, prefix: str | None) -> None:
    f = sel.family or family or ctx.preferred_family
    w = ctx.w
    if prefix:
        w(prefix)
    w(f"src {addr_n2a(f, bytes(sel.saddr))}/{sel.prefixlen_s} ")
    w(f"dst {addr_n2a(f, bytes(sel.daddr))}/{sel.prefixlen_d} ")
    if sel.proto:
        w(f"proto {strxf_proto(sel.proto)} ")
    p = sel.proto
    if p in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if sel.sport_mask:
            w(f"type {sel.sport} ")
        if sel.dport_mask:
            w(f"code {sel.dport} ")
    elif p == IPPROTO_GRE:
        if sel.sport_mask or sel.dport_mask:
            w(f"key {(sel.sport << 16) + sel.dport} ")
    elif p == IPPROTO_MH:
        if sel.sport_mask:
            w(f"type {sel.sport} ")
        if sel.dport_mask and ctx.show_stats > 0:
            w("(dport) 0x%.4x " % int.from_bytes(sel.dport.to_bytes(2, "big"), "little"))
    else:
        if sel.sport_mask:
            w(f"sport {sel.sport} ")
        if sel.dport_mask:
            w(f"dport {sel.dport} ")
    if sel.ifindex > 0:
        w(f"dev {ctx.ll_index_to_name(sel.ifindex)} ")
    if ctx.show_stats > 0:
        w(f"uid {sel.user}")
    w(ctx.sl)


def id_info_print(ctx: Ctx, saddr: bytes, xid, mode: int, reqid: int, family: int,
                  force_spi: bool, prefix: str | None, title: str | None) -> None:
    w = ctx.w
    if title:
        w(title)
    w(f"src {addr_n2a(family, saddr)} ")
    w(f"dst {addr_n2a(family, bytes(xid.daddr))}")
    w(ctx.sl)
    if prefix:
        w(prefix)
    w("\t")
    w(f"proto {strxf_xfrmproto(xid.proto)} ")
    if ctx.show_stats > 0 or force_spi or xid.spi:
        w("spi 0x%08x" % xid.spi)
        if ctx.show_stats > 0:
            w(f"({xid.spi})")
        w(" ")
    w(f"reqid {reqid}")
    if ctx.show_stats > 0:
        w("(0x%08x)" % reqid)
    w(" ")
    w("mode " + XFRM_MODE_NAMES.get(mode, str(mode)))
    w(ctx.sl)


def lifetime_print(ctx: Ctx, cfg, cur, prefix: str) -> None:
    w, sl = ctx.w, ctx.sl
    if cfg is not None:
        w(f"{prefix}lifetime config:{sl}")
        w(f"{prefix}  limit: soft {strxf_limit(cfg.soft_byte_limit)}(bytes),")
        w(f" hard {strxf_limit(cfg.hard_byte_limit)}(bytes){sl}")
        w(f"{prefix}  limit: soft {strxf_limit(cfg.soft_packet_limit)}(packets),")
        w(f" hard {strxf_limit(cfg.hard_packet_limit)}(packets){sl}")
        w(f"{prefix}  expire add: soft {cfg.soft_add_expires_seconds}(sec), "
          f"hard {cfg.hard_add_expires_seconds}(sec){sl}")
        w(f"{prefix}  expire use: soft {cfg.soft_use_expires_seconds}(sec), "
          f"hard {cfg.hard_use_expires_seconds}(sec){sl}")
    if cur is not None:
        w(f"{prefix}lifetime current:{sl}")
        w(f"{prefix}  {cur.bytes}(bytes), {cur.packets}(packets){sl}")
        w(f"{prefix}  add {strxf_time(cur.add_time)} ")
        w(f"use {strxf_time(cur.use_time)}{sl}")


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _algo_print(ctx: Ctx, t: int, payload: bytes, prefix: str, nokeys: bool, extra=None):
    """__xfrm_algo_print (+ the trailing ICV/trunc length of aead/auth-trunc)."""
    w = ctx.w
    if prefix:
        w(prefix)
    w(f"{strxf_algotype(t)} ")
    head = 72 if extra is not None else 68
    if len(payload) < 68:
        w("(ERROR truncated)")
    else:
        name = _cstr(payload[:64])
        keybits = int.from_bytes(payload[64:68], "little")
        w(f"{name} ")
        keylen = keybits // 8
        if len(payload) - 68 < keylen:
            w("(ERROR truncated)")
        elif nokeys:
            w("<<Keys hidden>>")
        elif keylen > 0:
            w("0x" + payload[head:head + keylen].hex())
            if ctx.show_stats > 0:
                w(f" ({keybits} bits)")
    if extra is not None:
        w(" %d" % int.from_bytes(payload[68:72].ljust(4, b"\0"), "little", signed=True))
    w(ctx.sl)


def _u32(raw: bytes) -> int:
    return int.from_bytes(raw[:4].ljust(4, b"\0"), "little")


def tmpl_print(ctx: Ctx, payload: bytes, prefix: str) -> None:
    size = X.XfrmUserTmpl.size()
    n = len(payload) // size
    if n <= 0:
        if prefix:
            ctx.w(prefix)
        ctx.w('(ERROR "tmpl" truncated)' + ctx.sl)
        return
    for i in range(n):
        t = X.XfrmUserTmpl.decode(payload, i * size)
        if prefix:
            ctx.w(prefix)
        id_info_print(ctx, bytes(t.saddr), t.id, t.mode, t.reqid, t.family, False, prefix,
                      "tmpl ")
        if ctx.show_stats > 0 or t.optional:
            if prefix:
                ctx.w(prefix)
            ctx.w("\t")
            if t.optional == 0:
                if ctx.show_stats > 0:
                    ctx.w("level required ")
            elif t.optional == 1:
                ctx.w("level use ")
            else:
                ctx.w(f"level {t.optional} ")
            if ctx.show_stats > 0:
                ctx.w(f"share {strxf_share(t.share)} ")
            ctx.w(ctx.sl)
        if ctx.show_stats > 0:
            if prefix:
                ctx.w(prefix)
            ctx.w("\tenc-mask %.8x auth-mask %.8x comp-mask %.8x" % (t.ealgos, t.aalgos, t.calgos))
            ctx.w(ctx.sl)


def _output_mark(ctx: Ctx, tb) -> None:
    ctx.w("output-mark 0x%x" % _u32(tb[X.Xfrma.SET_MARK]))
    if X.Xfrma.SET_MARK_MASK in tb:
        ctx.w("/0x%x" % _u32(tb[X.Xfrma.SET_MARK_MASK]))


def xfrma_print(ctx: Ctx, tb: dict, family: int, prefix: str, nokeys: bool,
                is_policy: bool = False) -> None:
    """xfrm_xfrma_print: ``tb`` maps XFRMA_* to payload bytes."""
    A = X.Xfrma
    w, sl = ctx.w, ctx.sl
    if A.MARK in tb:
        m = X.XfrmMark.decode_padded(tb[A.MARK])
        w("\tmark %s/%s " % (_hexc(m.v), _hexc(m.m)))
        if A.SET_MARK in tb:
            _output_mark(ctx, tb)
        w(sl)
    elif A.SET_MARK in tb:
        w("\t")
        _output_mark(ctx, tb)
        w(sl)
    if A.ALG_AUTH in tb and A.ALG_AUTH_TRUNC not in tb:
        _algo_print(ctx, A.ALG_AUTH, tb[A.ALG_AUTH], prefix, nokeys)
    if A.ALG_AUTH_TRUNC in tb:
        _algo_print(ctx, A.ALG_AUTH_TRUNC, tb[A.ALG_AUTH_TRUNC], prefix, nokeys, extra=True)
    if A.ALG_AEAD in tb:
        _algo_print(ctx, A.ALG_AEAD, tb[A.ALG_AEAD], prefix, nokeys, extra=True)
    if A.ALG_CRYPT in tb:
        _algo_print(ctx, A.ALG_CRYPT, tb[A.ALG_CRYPT], prefix, nokeys)
    if A.ALG_COMP in tb:
        _algo_print(ctx, A.ALG_COMP, tb[A.ALG_COMP], prefix, nokeys)
    if A.ENCAP in tb:
        w(prefix + "encap ")
        if len(tb[A.ENCAP]) < X.XfrmEncapTmpl.size():
            w("(ERROR truncated)" + sl)
            return
        e = X.XfrmEncapTmpl.decode(tb[A.ENCAP])
        name = {1: "espinudp-nonike", 2: "espinudp", 7: "espintcp"}.get(e.encap_type,
                                                                      str(e.encap_type))
        w(f"type {name} sport {e.encap_sport} dport {e.encap_dport} ")
        w(f"addr {addr_n2a(family, bytes(e.encap_oa))}" + sl)
    if A.TMPL in tb:
        tmpl_print(ctx, tb[A.TMPL], prefix)
    if A.COADDR in tb:
        w(prefix + "coa ")
        if len(tb[A.COADDR]) < 16:
            w("(ERROR truncated)" + sl)
            return
        w(addr_n2a(family, tb[A.COADDR]) + sl)
    if A.LASTUSED in tb:
        w(prefix + "lastused ")
        if len(tb[A.LASTUSED]) < 8:
            w("(ERROR truncated)" + sl)
            return
        w(strxf_time(int.from_bytes(tb[A.LASTUSED][:8], "little")) + sl)
    if A.REPLAY_VAL in tb:
        w(prefix + "anti-replay context: ")
        if len(tb[A.REPLAY_VAL]) < 12:
            w("(ERROR truncated)" + sl)
            return
        r = X.XfrmReplayState.decode(tb[A.REPLAY_VAL])
        w("seq 0x%x, oseq 0x%x, bitmap 0x%08x" % (r.seq, r.oseq, r.bitmap) + sl)
    if A.REPLAY_ESN_VAL in tb:
        raw = tb[A.REPLAY_ESN_VAL]
        w(prefix + "anti-replay esn context:")
        if len(raw) < X.XfrmReplayStateEsn.size():
            w("(ERROR truncated)" + sl)
            return
        w(sl)
        r = X.XfrmReplayStateEsn.decode(raw)
        w(prefix + " seq-hi 0x%x, seq 0x%x, oseq-hi 0x%x, oseq 0x%x" % (r.seq_hi, r.seq,
                                                                       r.oseq_hi, r.oseq) + sl)
        w(prefix + f" replay_window {r.replay_window}, bitmap-length {r.bmp_len}")
        j = 0
        for i in range(r.bmp_len, 0, -1):
            if j % 8 == 0:
                w(sl + prefix + " ")
            j += 1
            off = 24 + (i - 1) * 4
            w("%08x " % _u32(raw[off:off + 4]))
        w(sl)
    if A.OFFLOAD_DEV in tb:
        w(prefix + "crypto offload parameters: ")
        if len(tb[A.OFFLOAD_DEV]) < X.XfrmUserOffload.size():
            w("(ERROR truncated)" + sl)
            return
        xuo = X.XfrmUserOffload.decode(tb[A.OFFLOAD_DEV])
        direction = "in" if xuo.flags & X.XFRM_OFFLOAD_INBOUND else "out"
        mode = "packet" if xuo.flags & X.XFRM_OFFLOAD_PACKET else "crypto"
        if ctx.iproute2 == "6.15":
            # 6.15 always names the mode, and a policy's offload has no direction
            w(f"dev {ctx.ll_index_to_name(xuo.ifindex)} "
              + ("" if is_policy else f"dir {direction} ") + f"mode {mode}")
        else:
            w(f"dev {ctx.ll_index_to_name(xuo.ifindex)} dir {direction}")
            # 6.1 knows no mode; packet offload is marked as newer iproute2 marks it
            if xuo.flags & X.XFRM_OFFLOAD_PACKET:
                w(" mode packet")
        w(sl)
    if A.IF_ID in tb:
        w(prefix + "if_id 0x%x" % _u32(tb[A.IF_ID]) + sl)
    if A.TFCPAD in tb:
        w(prefix + f"tfcpad {_u32(tb[A.TFCPAD])}" + sl)
    # attributes newer than iproute2 6.1 (printed as current iproute2 prints them)
    if A.SA_DIR in tb:
        d = tb[A.SA_DIR][0]
        w(prefix + "dir " + {1: "in", 2: "out"}.get(d, str(d)) + sl)
    if A.SA_PCPU in tb:
        w(prefix + f"pcpu-num {_u32(tb[A.SA_PCPU])}" + sl)
    if A.NAT_KEEPALIVE_INTERVAL in tb:
        w(prefix + f"nat-keepalive-interval {_u32(tb[A.NAT_KEEPALIVE_INTERVAL])}" + sl)


def _hexc(v: int) -> str:
    """printf("%#x"): 0 prints as "0"."""
    return "0" if v == 0 else "0x%x" % v


_STATE_FLAGS = [(X.XFRM_STATE_NOECN, "noecn"), (X.XFRM_STATE_DECAP_DSCP, "decap-dscp"),
                (X.XFRM_STATE_NOPMTUDISC, "nopmtudisc"), (X.XFRM_STATE_WILDRECV, "wildrecv"),
                (X.XFRM_STATE_ICMP, "icmp"), (X.XFRM_STATE_AF_UNSPEC, "af-unspec"),
                (64, "align4"), (X.XFRM_STATE_ESN, "esn")]


def _flag_print(ctx: Ctx, flags: int, table) -> int:
    """XFRM_FLAG_PRINT: names separated by a space, none after the last."""
    for bit, name in table:
        if flags & bit:
            flags &= ~bit
            ctx.w(name + (" " if flags else ""))
    return flags


def state_info_print(ctx: Ctx, xs, tb: dict, prefix: str | None, title: str | None,
                     nokeys: bool) -> None:
    id_info_print(ctx, bytes(xs.saddr), xs.id, xs.mode, xs.reqid, xs.family,
                  is_ipsec(xs.id.proto), prefix, title)
    buf = (prefix or "") + "\t"
    w = ctx.w
    w(buf)
    w(f"replay-window {xs.replay_window} ")
    if ctx.show_stats > 0:
        w("seq 0x%08u " % xs.seq)
    if ctx.show_stats > 0 or xs.flags:
        w("flag ")
        rest = _flag_print(ctx, xs.flags, _STATE_FLAGS)
        if rest:
            w("%x" % rest)
    if ctx.show_stats > 0 and X.Xfrma.SA_EXTRA_FLAGS in tb:
        w("extra_flag ")
        rest = _flag_print(ctx, _u32(tb[X.Xfrma.SA_EXTRA_FLAGS]),
                           [(1, "dont-encap-dscp"), (2, "oseq-may-wrap")])
        if rest:
            w("%x" % rest)
    if ctx.show_stats > 0:
        w(f" (0x{strxf_mask8(xs.flags)})")
    w(ctx.sl)
    xfrma_print(ctx, tb, xs.family, buf, nokeys)
    if bytes(xs.sel) != bytes(X.XfrmSelector.size()):
        selector_print(ctx, xs.sel, xs.family, buf + "sel ")
    if ctx.show_stats > 0:
        lifetime_print(ctx, xs.lft, xs.curlft, buf)
        w(f"{buf}stats:{ctx.sl}")
        w(f"{buf}  replay-window {xs.stats.replay_window} replay {xs.stats.replay} "
          f"failed {xs.stats.integrity_failed}{ctx.sl}")
    if X.Xfrma.SEC_CTX in tb:
        sec_ctx_print(ctx, tb[X.Xfrma.SEC_CTX])


def sec_ctx_print(ctx: Ctx, raw: bytes) -> None:
    ctx.w("\tsecurity context ")
    if len(raw) < 8:
        ctx.w("(ERROR truncated)")
    n = int.from_bytes(raw[6:8].ljust(2, b"\0"), "little")
    ctx.w(raw[8:8 + n].decode("latin-1") + " " + ctx.sl)


def policy_info_print(ctx: Ctx, xp, tb: dict, prefix: str | None, title: str | None) -> None:
    selector_print(ctx, xp.sel, ctx.preferred_family, title)
    if X.Xfrma.SEC_CTX in tb:
        sec_ctx_print(ctx, tb[X.Xfrma.SEC_CTX])
    buf = (prefix or "") + "\t"
    w = ctx.w
    w(buf)
    d = xp.dir
    if d >= 3:
        d -= 3
        w("socket ")
    else:
        w("dir ")
    w({0: "in", 1: "out", 2: "fwd"}.get(d, str(d)) + " ")
    if xp.action == 0:
        if ctx.show_stats > 0:
            w("action allow ")
    elif xp.action == 1:
        w("action block ")
    else:
        w(f"action {xp.action} ")
    if ctx.show_stats:
        w(f"index {xp.index} ")
    w(f"priority {xp.priority} ")
    if X.Xfrma.POLICY_TYPE in tb:
        w("ptype ")
        raw = tb[X.Xfrma.POLICY_TYPE]
        if len(raw) < 6:
            w("(ERROR truncated)")
        w(f"{strxf_ptype(raw[0] if raw else 0)} ")
    if ctx.show_stats > 0:
        w(f"share {strxf_share(xp.share)} ")
    if ctx.show_stats > 0 or xp.flags:
        w("flag ")
        rest = _flag_print(ctx, xp.flags, [(1, "localok"), (2, "icmp")])
        if rest:
            w("%x" % rest)
    if ctx.show_stats > 0:
        w(f" (0x{strxf_mask8(xp.flags)})")
    w(ctx.sl)
    if ctx.show_stats > 0:
        lifetime_print(ctx, xp.lft, xp.curlft, buf)
    xfrma_print(ctx, tb, xp.sel.family, buf, False, is_policy=True)
