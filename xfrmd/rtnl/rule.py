"""Policy routing rules (net/core/fib_rules.c): RTM_NEWRULE / RTM_DELRULE / RTM_GETRULE for
IPv4 and IPv6, the default rules of a new namespace, the automatic preference
(``fib_default_rule_pref``), EEXIST under NLM_F_EXCL (``rule_exists``), ENOENT for a delete
that matches nothing, and RTNLGRP_IPV4_RULE / RTNLGRP_IPV6_RULE notifications. IKE daemons
add one at start (charon: ``220: from all lookup 220``). Rules are kept and shown; the route
lookups of ``ip route get`` still use the main table only."""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass, field
from typing import Any

from netlink_codec.netlink import NETLINK_ROUTE, NLM_F_MULTI, encode_msg, nla, nla_u32

from .. import kconfig
from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .policy import FIB_RULE_POLICY, FRA_MAX, dump_error, rtnl_parse

RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")   # family dst_len src_len tos table res1 res2 action flags
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_FWMARK = 1, 2, 3, 6, 10
FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_FWMASK, FRA_OIFNAME, FRA_PROTOCOL = 14, 15, 16, 17, 21
FR_ACT_TO_TBL = 1
FIB_RULE_INVERT, FIB_RULE_IIF_DETACHED, FIB_RULE_OIF_DETACHED = 2, 8, 16
RT_TABLE_COMPAT, RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 252, 253, 254, 255
RTPROT_KERNEL = 2
RTNLGRP = {2: 8, 10: 19}                     # RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_RULE
NLM_F_EXCL = 0x200


@dataclass
class FibRule:
    family: int
    pref: int = 0
    table: int = 0
    action: int = FR_ACT_TO_TBL
    flags: int = 0               # FIB_RULE_INVERT as asked (the DETACHED bits are computed)
    proto: int = 0
    dst: bytes = b""
    dst_len: int = 0
    src: bytes = b""
    src_len: int = 0
    tos: int = 0
    iifname: str = ""
    oifname: str = ""
    mark: int = 0
    mask: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


RTNL_FAMILY_IPMR, RTNL_FAMILY_IP6MR = 128, 129
# the order rule families registered in, which an AF_UNSPEC dump follows
DUMP_ORDER = (2, RTNL_FAMILY_IPMR, RTNL_FAMILY_IP6MR, 10)
# the multicast families have fib_rules_ops only in a kernel with multiple mroute tables
# (ipmr_rules_init / ip6mr_rules_init: the single-table variants register none)
_FAMILY_OPTION = {RTNL_FAMILY_IPMR: "IP_MROUTE_MULTIPLE_TABLES",
                  RTNL_FAMILY_IP6MR: "IPV6_MROUTE_MULTIPLE_TABLES"}


def rule_families(kernel: Any) -> tuple[int, ...]:
    """The families with fib_rules_ops in this kernel, in registration order."""
    return tuple(f for f in DUMP_ORDER
                 if f not in _FAMILY_OPTION or kconfig.enabled(kernel, _FAMILY_OPTION[f]))


def default_rules(family: int) -> list[FibRule]:
    """``fib4_rules_init`` / ``fib6_rules_init``: local, main (and default for IPv4); the
    multicast routing families (``ipmr_rules_init``, ``ip6mr_rules_init``) have one rule,
    32767 to their default table."""
    if family == RTNL_FAMILY_IPMR:
        return [FibRule(family, 0x7FFF, RT_TABLE_DEFAULT, proto=RTPROT_KERNEL)]
    if family == RTNL_FAMILY_IP6MR:
        return [FibRule(family, 0x7FFF, RT_TABLE_MAIN, proto=RTPROT_KERNEL)]
    rules = [FibRule(family, 0, RT_TABLE_LOCAL, proto=RTPROT_KERNEL),
             FibRule(family, 0x7FFE, RT_TABLE_MAIN, proto=RTPROT_KERNEL)]
    if family == 2:
        rules.append(FibRule(family, 0x7FFF, RT_TABLE_DEFAULT, proto=RTPROT_KERNEL))
    return rules


def rules_of(ns: Any, family: int) -> list[FibRule]:
    """The namespace's rules of ``family`` in lookup order (the defaults until changed)."""
    store = ns.__dict__.setdefault("fib_rules", {})
    if family not in store:
        store[family] = default_rules(family)
    rules: list[FibRule] = store[family]
    return rules


def fib_has_custom_rules(ns: Any) -> bool:
    """``net->ipv4.fib_has_custom_rules``: an IPv4 rule was added (``fib4_rule_configure``),
    so the local and main tables are no longer one (xfrmd/rtnl/fib.py ``_tb4``)."""
    return bool(ns.__dict__.get("fib_has_custom_rules"))


def fib_nl_fill_rule(ns: Any, r: FibRule, msg_type: int, seq: int, portid: int,
                     flags: int) -> bytes:
    """The rule as ``fib_nl_fill_rule`` + ``fib4/6_rule_fill`` write it."""
    rflags = r.flags
    if r.iifname and ns.links.by_name(r.iifname) is None:
        rflags |= FIB_RULE_IIF_DETACHED
    if r.oifname and ns.links.by_name(r.oifname) is None:
        rflags |= FIB_RULE_OIF_DETACHED
    hdr = FIB_RULE_HDR.pack(r.family, r.dst_len, r.src_len, r.tos,
                            r.table if r.table < 256 else RT_TABLE_COMPAT, 0, 0, r.action, rflags)
    body = nla_u32(FRA_TABLE, r.table) + nla_u32(FRA_SUPPRESS_PREFIXLEN, 0xFFFFFFFF)
    body += nla(FRA_PROTOCOL, bytes([r.proto]))
    if r.iifname:
        body += nla(FRA_IIFNAME, r.iifname.encode() + b"\0")
    if r.oifname:
        body += nla(FRA_OIFNAME, r.oifname.encode() + b"\0")
    if r.pref:
        body += nla_u32(FRA_PRIORITY, r.pref)
    if r.mark:
        body += nla_u32(FRA_FWMARK, r.mark)
    if r.mask or r.mark:
        body += nla_u32(FRA_FWMASK, r.mask)
    if r.dst_len:
        body += nla(FRA_DST, r.dst)
    if r.src_len:
        body += nla(FRA_SRC, r.src)
    return encode_msg(msg_type, flags, seq, portid, hdr + body)


def _parse(req: Request) -> FibRule:
    off = req.payload_offset
    if req.end - off < FIB_RULE_HDR.size:
        raise KernelError(E.EINVAL, "Invalid msg length")            # fib_nl_newrule
    fam, dst_len, src_len, tos, table, _r1, _r2, action, flags = FIB_RULE_HDR.unpack_from(req.buf, off)
    if fam not in (2, 10):
        raise KernelError(E.EAFNOSUPPORT)           # no fib_rules_ops for the family
    alen = 4 if fam == 2 else 16
    r = FibRule(fam, table=table, action=action, flags=flags & FIB_RULE_INVERT, tos=tos,
                dst_len=dst_len, src_len=src_len)
    r.extra["pref_given"] = r.extra["mask_given"] = False
    try:
        tb = rtnl_parse(req, FIB_RULE_HDR.size, FIB_RULE_POLICY, FRA_MAX)
    except KernelError as err:
        # fib_nl_newrule / fib_nl_delrule replace the parser's message, keep its offset
        if err.extack():
            err.msg = "Error parsing msg"
        raise

    def u32(t: int) -> int:                          # the policy checked the length
        v: int = struct.unpack_from("=I", tb[t])[0]
        return v
    if FRA_PRIORITY in tb:
        r.pref = u32(FRA_PRIORITY)
        r.extra["pref_given"] = True
    if FRA_TABLE in tb:
        r.table = u32(FRA_TABLE)
    if FRA_FWMARK in tb:
        r.mark = u32(FRA_FWMARK)
    if FRA_FWMASK in tb:
        r.mask = u32(FRA_FWMASK)
        r.extra["mask_given"] = True
    if FRA_IIFNAME in tb:
        r.iifname = tb[FRA_IIFNAME].split(b"\0", 1)[0].decode(errors="replace")
    if FRA_OIFNAME in tb:
        r.oifname = tb[FRA_OIFNAME].split(b"\0", 1)[0].decode(errors="replace")
    if FRA_PROTOCOL in tb:
        r.proto = tb[FRA_PROTOCOL][0]
    # fib_nl2rule: an address must be the family's size and its prefix length fit it
    maxlen = alen * 8
    if src_len or FRA_SRC in tb:
        if src_len > maxlen or len(tb.get(FRA_SRC, b"")) != alen:
            raise KernelError(E.EINVAL, "Invalid source address")
        r.src = tb[FRA_SRC]
    if dst_len or FRA_DST in tb:
        if dst_len > maxlen or len(tb.get(FRA_DST, b"")) != alen:
            raise KernelError(E.EINVAL, "Invalid dst address")
        r.dst = tb[FRA_DST]
    if dst_len > maxlen or src_len > maxlen or (dst_len and not r.dst) or (src_len and not r.src):
        raise KernelError(E.EINVAL, "Invalid prefix length")
    if r.mark and not r.extra["mask_given"]:
        r.mask = 0xFFFFFFFF                         # fib_nl2rule: a mark alone matches all bits
    return r


def _same(a: FibRule, b: FibRule) -> bool:
    """``rule_exists``: every field the rule was given."""
    return (a.pref == b.pref and a.table == b.table and a.action == b.action
            and a.flags == b.flags and a.iifname == b.iifname and a.oifname == b.oifname
            and a.mark == b.mark and a.mask == b.mask and a.tos == b.tos
            and a.dst_len == b.dst_len and a.src_len == b.src_len and a.dst == b.dst
            and a.src == b.src and a.proto == b.proto)


def _notify(ns: Any, r: FibRule, msg_type: int, req: Request) -> None:
    ns.kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP[r.family],
                        fib_nl_fill_rule(ns, r, msg_type, req.hdr.seq, req.sock.portid, 0))


def fib_nl_newrule(req: Request) -> Reply:
    r = _parse(req)
    ns = req.netns
    rules = rules_of(ns, r.family)
    if not r.extra["pref_given"]:                    # fib_default_rule_pref
        r.pref = rules[1].pref - 1 if len(rules) > 1 and rules[1].pref else 0
    if req.hdr.flags & NLM_F_EXCL and any(_same(r, x) for x in rules):
        raise KernelError(E.EEXIST)
    at = len(rules)
    for i, x in enumerate(rules):                    # after every rule of lower or equal pref
        if x.pref > r.pref:
            at = i
            break
    rules.insert(at, r)
    if r.family == 2:                                # fib4_rule_configure
        ns.__dict__["fib_has_custom_rules"] = True
    _notify(ns, r, RTM_NEWRULE, req)
    return OK


def fib_nl_delrule(req: Request) -> Reply:
    r = _parse(req)
    ns = req.netns
    rules = rules_of(ns, r.family)
    for x in rules:                                  # rule_find: what the request names
        if r.extra["pref_given"] and x.pref != r.pref:
            continue
        if r.table and x.table != r.table:
            continue
        if r.action and r.action != FR_ACT_TO_TBL and x.action != r.action:
            continue
        if r.flags and x.flags != r.flags:
            continue
        if r.tos and x.tos != r.tos:                 # fib4/fib6_rule_compare: dsfield
            continue
        if r.iifname and x.iifname != r.iifname:
            continue
        if r.oifname and x.oifname != r.oifname:
            continue
        if r.mark and (x.mark != r.mark or x.mask != r.mask):
            continue
        if r.dst_len and (x.dst_len != r.dst_len or x.dst != r.dst):
            continue
        if r.src_len and (x.src_len != r.src_len or x.src != r.src):
            continue
        rules.remove(x)
        _notify(ns, x, RTM_DELRULE, req)
        return OK
    raise KernelError(E.ENOENT)


def fib_nl_dumprule(req: Request) -> Any:
    off = req.payload_offset
    family = req.buf[off] if req.end - off >= 1 else 0
    ns = req.netns
    families = rule_families(ns.kernel)
    if family and family not in families:
        # lookup_rules_ops found none: the dumpit's error, so NLMSG_DONE carries it
        return req.start_dump(dump_error(KernelError(E.EAFNOSUPPORT)))
    msgs = []
    for fam in (families if family == 0 else (family,)):
        for r in rules_of(ns, fam):
            msgs.append(fib_nl_fill_rule(ns, r, RTM_NEWRULE, req.hdr.seq, req.sock.portid, NLM_F_MULTI))
    return req.start_dump(msgs)


RTNL_MSG_HANDLERS = (
    (0, RTM_NEWRULE, fib_nl_newrule, None),
    (0, RTM_DELRULE, fib_nl_delrule, None),
    (0, RTM_GETRULE, None, fib_nl_dumprule),
)
