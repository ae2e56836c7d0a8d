"""``ip xfrm policy …`` (iproute2 ip/xfrm_policy.c)."""
from __future__ import annotations

import struct

from netlink_codec import xfrm as X
from netlink_codec.netlink import NLM_F_DUMP, NLM_F_REQUEST

from .args import (AF_INET, AF_UNSPEC, Argv, die, duparg, duparg2, get_u8, get_u32, invarg,
                   missarg)
from .ipxfrm import (Ctx, do_command, parse_id, parse_lifetime, parse_mark, parse_mode,
                     parse_reqid, parse_selector, policy_info_print, sctx_bytes)
from .msg import Request, parse_tb
from .xfrm_state import _addr_match, _flag_parse

A = X.Xfrma
M = X.XfrmMsg
POLICY_FLAGS = {"localok": 1, "icmp": 2}
XFRM_TMPLS_BUF_SIZE = 1024


def _dir_parse(a: Argv) -> int:
    d = {"in": 0, "out": 1, "fwd": 2}.get(a.cur)
    if d is None:
        invarg("DIR value is invalid", a.cur)
    return d


def _ptype_parse(a: Argv) -> int:
    t = {"main": 0, "sub": 1}.get(a.cur)
    if t is None:
        invarg("PTYPE value is invalid", a.cur)
    return t


class _Common:
    """Options policy add/update and get/delete share (dir, ctx, mark, ptype, if_id)."""

    def __init__(self):
        self.dirp = self.ptypep = None
        self.dir = self.ptype = 0
        self.sctx = None
        self.mark = X.XfrmMark()
        self.if_id = None

    def parse(self, ctx: Ctx, a: Argv) -> bool:
        """Consume one option at the cursor; False when it is not one of these."""
        w = a.cur
        if w == "dir":
            if self.dirp:
                duparg("dir", a.cur)
            self.dirp = w
            a.next()
            self.dir = _dir_parse(a)
        elif w == "ctx":
            if self.sctx is not None:
                duparg("ctx", a.cur)
            a.next()
            self.sctx = sctx_bytes(a.cur)
        elif w == "mark":
            self.mark = parse_mark(ctx, a)
        elif w == "ptype":
            if self.ptypep:
                duparg("ptype", a.cur)
            self.ptypep = w
            a.next()
            self.ptype = _ptype_parse(a)
        elif w == "if_id":
            a.next()
            self.if_id = get_u32(a.cur)
            if self.if_id is None:
                invarg("IF_ID value is invalid", a.cur)
        else:
            return False
        return True


def _tmpl_parse(ctx: Ctx, a: Argv, t) -> None:
    start = a.argc
    idp = False
    while True:
        w = a.cur
        if w == "mode":
            a.next()
            t.mode = parse_mode(a)
        elif w == "reqid":
            a.next()
            t.reqid = parse_reqid(a)
        elif w == "level":
            a.next()
            if a.cur == "required":
                t.optional = 0
            elif a.cur == "use":
                t.optional = 1
            else:
                invarg("LEVEL value is invalid\n", a.cur)
        else:
            if idp:
                a.prev()
                break
            idp = True
            ctx.preferred_family = AF_UNSPEC
            fam = parse_id(ctx, a, t.saddr, t.id, False)
            if fam:
                t.family = fam
            ctx.preferred_family = t.family
        if not a.next_ok():
            break
        a.next()
    if a.argc == start:
        missarg("TMPL")


def policy_modify(ctx: Ctx, nl, cmd: int, a: Argv) -> int:
    xp = X.XfrmUserpolicyInfo()
    xp.sel.family = ctx.preferred_family
    for f in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
        setattr(xp.lft, f, X.XFRM_INF)
    c = _Common()
    selp = None
    tmpls = b""
    offload = None
    while a.argc > 0:
        w = a.cur
        if c.parse(ctx, a):
            pass
        elif w == "index":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("INDEX value is invalid", a.cur)
            xp.index = v
        elif w == "action":
            a.next()
            if a.cur == "allow":
                xp.action = 0
            elif a.cur == "block":
                xp.action = 1
            else:
                invarg("ACTION value is invalid\n", a.cur)
        elif w == "priority":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("PRIORITY value is invalid", a.cur)
            xp.priority = v
        elif w == "flag":
            a.next()
            xp.flags = xp.flags | _flag_parse(a, POLICY_FLAGS, "FLAG value is invalid", 8)
        elif w == "limit":
            a.next()
            parse_lifetime(a, xp.lft)
        elif w == "tmpl":
            if len(tmpls) + X.XfrmUserTmpl.size() > XFRM_TMPLS_BUF_SIZE:
                die("Too many tmpls: buffer overflow\n")
            t = X.XfrmUserTmpl()
            t.family = ctx.preferred_family
            t.aalgos = t.ealgos = t.calgos = 0xFFFFFFFF
            a.next()
            _tmpl_parse(ctx, a, t)
            tmpls += t.encode()
        elif w == "offload":                  # newer iproute2: offload packet dev DEV
            a.next()
            if a.cur != "packet":
                invarg("Invalid offload mode", a.cur)
            a.next()
            if a.cur != "dev":
                invarg("Missing dev keyword", a.cur)
            a.next()
            offload = ctx.ll_name_to_index(a.cur)
            if not offload:
                invarg("Invalid device name", a.cur)
        else:
            if selp:
                duparg("unknown", a.cur)
            selp = w
            parse_selector(ctx, a, xp.sel)
            if ctx.preferred_family == AF_UNSPEC:
                ctx.preferred_family = xp.sel.family
        a.advance()
    if not c.dirp:
        die("Not enough information: DIR is required.\n")
    xp.dir = c.dir
    req = Request(cmd, NLM_F_REQUEST)
    if c.ptypep:
        req.addattr(A.POLICY_TYPE, X.XfrmUserpolicyType(type=c.ptype).encode())
    if tmpls:
        req.addattr(A.TMPL, tmpls)
    if c.mark.m:
        req.addattr(A.MARK, c.mark.encode())
    if c.sctx is not None:
        req.addattr(A.SEC_CTX, c.sctx)
    if c.if_id is not None:
        req.addattr(A.IF_ID, struct.pack("<I", c.if_id))
    if offload is not None:
        # the direction comes from the policy's dir
        req.addattr(A.OFFLOAD_DEV, X.XfrmUserOffload(ifindex=offload,
                                                    flags=X.XFRM_OFFLOAD_PACKET).encode())
    if xp.sel.family == AF_UNSPEC:
        xp.sel.family = AF_INET
    req.fixed = xp.encode()
    nl.talk(req.bytes())
    return 0


def _filter_match(ctx: Ctx, xp, ptype: int) -> bool:
    f = ctx.filter
    if not f.use:
        return True
    fp = f.xpinfo
    if fp.sel.family != AF_UNSPEC and fp.sel.family != xp.sel.family:
        return False
    if (xp.dir ^ fp.dir) & f.dir_mask:
        return False
    if f.filter_socket and xp.dir >= 3:
        return False
    if (ptype ^ f.ptype) & f.ptype_mask:
        return False
    if f.sel_src_mask and not _addr_match(bytes(xp.sel.saddr), bytes(fp.sel.saddr),
                                          f.sel_src_mask):
        return False
    if f.sel_dst_mask and not _addr_match(bytes(xp.sel.daddr), bytes(fp.sel.daddr),
                                          f.sel_dst_mask):
        return False
    if (xp.sel.ifindex ^ fp.sel.ifindex) & f.sel_dev_mask:
        return False
    if (xp.sel.proto ^ fp.sel.proto) & f.upspec_proto_mask:
        return False
    if f.upspec_sport_mask and (xp.sel.sport ^ fp.sel.sport) & f.upspec_sport_mask:
        return False
    if f.upspec_dport_mask and (xp.sel.dport ^ fp.sel.dport) & f.upspec_dport_mask:
        return False
    if (xp.index ^ fp.index) & f.index_mask:
        return False
    if (xp.action ^ fp.action) & f.action_mask:
        return False
    if (xp.priority ^ fp.priority) & f.priority_mask:
        return False
    if f.policy_flags_mask and not (xp.flags & fp.flags):
        return False
    return True


def print_policy(ctx: Ctx, msg: bytes) -> int:
    """xfrm_policy_print."""
    length, mtype = struct.unpack_from("<IH", msg)
    if mtype not in (M.NEWPOLICY, M.DELPOLICY, M.UPDPOLICY, M.POLEXPIRE):
        ctx.err("Not a policy: %08x %08x %08x\n" % (length, mtype,
                                                    struct.unpack_from("<H", msg, 6)[0]))
        return 0
    fixed = {M.DELPOLICY: X.XfrmUserpolicyId, M.POLEXPIRE: X.XfrmUserPolexpire}.get(
        mtype, X.XfrmUserpolicyInfo).size()
    space = 16 + ((fixed + 3) & ~3)
    if length - space < 0:
        ctx.err(f"BUG: wrong nlmsg len {length - space}\n")
        return -1
    tb = parse_tb(msg, space, length)
    xp = hard = None
    if mtype == M.POLEXPIRE:
        e = X.XfrmUserPolexpire.decode(msg, 16)
        xp, hard = e.pol, e.hard
    elif mtype != M.DELPOLICY:
        xp = X.XfrmUserpolicyInfo.decode(msg, 16)
    ptype = 0
    if A.POLICY_TYPE in tb:
        if len(tb[A.POLICY_TYPE]) < 6:
            ctx.err("too short XFRMA_POLICY_TYPE len\n")
            return -1
        ptype = tb[A.POLICY_TYPE][0]
    if xp is not None and not _filter_match(ctx, xp, ptype):
        return 0
    ctx.w({M.DELPOLICY: "Deleted ", M.UPDPOLICY: "Updated ",
           M.POLEXPIRE: "Expired "}.get(mtype, ""))
    if mtype == M.DELPOLICY:
        if A.POLICY not in tb:
            ctx.err("Buggy XFRM_MSG_DELPOLICY: no XFRMA_POLICY\n")
            return -1
        xp = X.XfrmUserpolicyInfo.decode_padded(tb[A.POLICY])
    policy_info_print(ctx, xp, tb, None, None)
    if hard is not None:
        ctx.w(f"\thard {hard}{ctx.sl}")
    if ctx.oneline:
        ctx.w("\n")
    return 0


def policy_get_or_delete(ctx: Ctx, nl, a: Argv, delete: bool) -> int:
    xpid = X.XfrmUserpolicyId()
    c = _Common()
    selp = indexp = None
    while a.argc > 0:
        w = a.cur
        if c.parse(ctx, a):
            pass
        elif w == "index":
            if indexp:
                duparg("index", a.cur)
            indexp = w
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("INDEX value is invalid", a.cur)
            xpid.index = v
        else:
            if selp:
                invarg("unknown", a.cur)
            selp = w
            parse_selector(ctx, a, xpid.sel)
            if ctx.preferred_family == AF_UNSPEC:
                ctx.preferred_family = xpid.sel.family
        a.advance()
    if not c.dirp:
        die("Not enough information: DIR is required.\n")
    xpid.dir = c.dir
    req = Request(M.DELPOLICY if delete else M.GETPOLICY, NLM_F_REQUEST)
    if c.ptypep:
        req.addattr(A.POLICY_TYPE, X.XfrmUserpolicyType(type=c.ptype).encode())
    if not selp and not indexp:
        die("Not enough information: either SELECTOR or INDEX is required.\n")
    if selp and indexp:
        duparg2("SELECTOR", "INDEX")
    if xpid.sel.family == AF_UNSPEC:
        xpid.sel.family = AF_INET
    if c.mark.m & c.mark.v:
        req.addattr(A.MARK, c.mark.encode())
    if c.sctx is not None:
        req.addattr(A.SEC_CTX, c.sctx)
    if c.if_id is not None:
        req.addattr(A.IF_ID, struct.pack("<I", c.if_id))
    req.fixed = xpid.encode()
    if delete:
        nl.talk(req.bytes())
    else:
        print_policy(ctx, nl.talk(req.bytes(), answer=True))
    return 0


def policy_list_or_deleteall(ctx: Ctx, nl, a: Argv, deleteall: bool) -> int:
    f = ctx.filter
    if a.argc > 0 or ctx.preferred_family != AF_UNSPEC:
        f.use = True
    f.xpinfo.sel.family = ctx.preferred_family
    selp = None
    while a.argc > 0:
        w = a.cur
        if w == "dir":
            a.next()
            f.xpinfo.dir = _dir_parse(a)
            f.dir_mask = 0xFF
        elif w == "index":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("INDEX value is invalid", a.cur)
            f.xpinfo.index = v
            f.index_mask = 0xFFFFFFFF
        elif w == "ptype":
            a.next()
            f.ptype = _ptype_parse(a)
            f.ptype_mask = 0xFF
        elif w == "action":
            a.next()
            if a.cur == "allow":
                f.xpinfo.action = 0
            elif a.cur == "block":
                f.xpinfo.action = 1
            else:
                invarg("ACTION value is invalid\n", a.cur)
            f.action_mask = 0xFF
        elif w == "priority":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("PRIORITY value is invalid", a.cur)
            f.xpinfo.priority = v
            f.priority_mask = 0xFFFFFFFF
        elif w == "flag":
            a.next()
            f.xpinfo.flags = f.xpinfo.flags | _flag_parse(a, POLICY_FLAGS,
                                                          "FLAG value is invalid", 8)
            f.policy_flags_mask = 0xFF
        elif w == "nosock":
            f.filter_socket = True
        else:
            if selp:
                invarg("unknown", w)
            selp = w
            parse_selector(ctx, a, f.xpinfo.sel)
            if ctx.preferred_family == AF_UNSPEC:
                ctx.preferred_family = f.xpinfo.sel.family
        a.advance()
    if deleteall:
        while True:
            buf = bytearray()
            count = 0
            for msg in nl.dump(Request(M.GETPOLICY, NLM_F_DUMP | NLM_F_REQUEST).bytes()):
                if struct.unpack_from("<H", msg, 4)[0] != M.NEWPOLICY:
                    continue
                xp = X.XfrmUserpolicyInfo.decode(msg, 16)
                tb = parse_tb(msg, 16 + X.XfrmUserpolicyInfo.size(), len(msg), raw=True)
                ptype = msg[tb[A.POLICY_TYPE] + 4] if A.POLICY_TYPE in tb else 0
                if not _filter_match(ctx, xp, ptype) or xp.dir >= 3:
                    continue
                if len(buf) + 16 + X.XfrmUserpolicyId.size() > 8192:
                    continue
                nl.seq += 1
                d = Request(M.DELPOLICY, NLM_F_REQUEST, seq=nl.seq)
                d.fixed = X.XfrmUserpolicyId(sel=xp.sel, dir=xp.dir, index=xp.index).encode()
                if A.MARK in tb:
                    start = tb[A.MARK] + 4
                    d.addattr(A.MARK, msg[start:start + 12].ljust(12, b"\0"))
                if A.IF_ID in tb:
                    start = tb[A.IF_ID] + 4
                    d.addattr(A.IF_ID, msg[start:start + 4])
                buf += d.bytes()
                count += 1
            if count == 0:
                break
            nl.send_check(bytes(buf))
        return 0
    for msg in nl.dump(Request(M.GETPOLICY, NLM_F_DUMP | NLM_F_REQUEST).bytes()):
        print_policy(ctx, msg)
    return 0


def spd_getinfo(ctx: Ctx, nl, a: Argv) -> int:
    req = Request(M.GETSPDINFO, NLM_F_REQUEST, fixed=struct.pack("<I", 0xFFFFFFFF))
    ans = nl.talk(req.bytes(), answer=True)
    tb = parse_tb(ans, 20, len(ans))
    w = ctx.w
    w("\t SPD")
    S = X.XfrmaSpd
    if S.INFO in tb:
        v = struct.unpack_from("<6I", tb[S.INFO].ljust(24, b"\0"))
        w(f" IN  {v[0]} OUT {v[1]} FWD {v[2]}")
        if ctx.show_stats:
            w(f" (Sock: IN {v[3]} OUT {v[4]} FWD {v[5]})")
        w(ctx.sl)
    if ctx.show_stats > 1:
        if S.HINFO in tb:
            c, m = struct.unpack_from("<2I", tb[S.HINFO].ljust(8, b"\0"))
            w(f"\t SPD buckets: count {c} Max {m}{ctx.sl}")
        for t, name in ((3, "IPv4"), (4, "IPv6")):
            if t in tb:
                lb, rb = tb[t][0], tb[t][1]
                w(f"\t SPD {name} thresholds: local {lb} remote {rb}{ctx.sl}")
    if ctx.oneline:
        w("\n")
    return 0


def spd_setinfo(ctx: Ctx, nl, a: Argv) -> int:
    req = Request(M.NEWSPDINFO, NLM_F_REQUEST, fixed=struct.pack("<I", 0xFFFFFFFF))
    seen = set()
    while a.argc > 0:
        w = a.cur
        if w in ("hthresh4", "hthresh6"):
            if w in seen:
                duparg(w, a.cur)
            seen.add(w)
            limit = 32 if w == "hthresh4" else 128
            a.next()
            lb = get_u8(a.cur)
            if lb is None or lb > limit:
                invarg(f"{w} LBITS value is invalid", a.cur)
            a.next()
            rb = get_u8(a.cur)
            if rb is None or rb > limit:
                invarg(f"{w} RBITS value is invalid", a.cur)
            req.addattr(3 if w == "hthresh4" else 4, bytes([lb, rb]))
        else:
            invarg("unknown", w)
        a.advance()
    nl.talk(req.bytes())
    return 0


def spd_setdefault(ctx: Ctx, nl, a: Argv) -> int:
    up = {"in": 0, "fwd": 0, "out": 0}
    while a.argc > 0:
        w = a.cur
        if w in up:
            if up[w]:
                duparg(w, a.cur)
            a.next()
            v = {"block": 1, "accept": 2}.get(a.cur)
            if v is None:
                invarg(f"{w} policy value is invalid", a.cur)
            up[w] = v
        else:
            invarg("unknown direction", w)
        a.advance()
    req = Request(M.SETDEFAULT, NLM_F_REQUEST, fixed=bytes([up["in"], up["fwd"], up["out"]]))
    nl.talk(req.bytes())
    return 0


def spd_getdefault(ctx: Ctx, nl, a: Argv) -> int:
    req = Request(M.GETDEFAULT, NLM_F_REQUEST, fixed=bytes(3))
    ans = nl.talk(req.bytes(), answer=True)
    if len(ans) < 16 + 4:
        ctx.err(f"BUG: short nlmsg len {len(ans)} (expect 20) for XFRM_MSG_GETDEFAULT\n")
        return 1
    names = {0: "unspec", 1: "block", 2: "accept"}
    i, fw, o = ans[16], ans[17], ans[18]
    ctx.w("Default policies:\n")
    ctx.w(f" in:  {names.get(i, 'unknown')}\n fwd: {names.get(fw, 'unknown')}\n"
          f" out: {names.get(o, 'unknown')}\n")
    return 0


def policy_flush(ctx: Ctx, nl, a: Argv) -> int:
    req = Request(M.FLUSHPOLICY, NLM_F_REQUEST)
    ptypep = None
    while a.argc > 0:
        if a.cur == "ptype":
            if ptypep:
                duparg("ptype", a.cur)
            ptypep = a.cur
            a.next()
            req.addattr(A.POLICY_TYPE, X.XfrmUserpolicyType(type=_ptype_parse(a)).encode())
        else:
            invarg("unknown", a.cur)
        a.advance()
    nl.talk(req.bytes())
    return 0


def _policy_list(ctx: Ctx, nl, a: Argv) -> int:
    return policy_list_or_deleteall(ctx, nl, a, False)


# do_xfrm_policy's commands, in the order it tries them
POLICY_COMMANDS = (
    (("add",), lambda ctx, nl, a: policy_modify(ctx, nl, M.NEWPOLICY, a)),
    (("update",), lambda ctx, nl, a: policy_modify(ctx, nl, M.UPDPOLICY, a)),
    (("delete",), lambda ctx, nl, a: policy_get_or_delete(ctx, nl, a, True)),
    (("deleteall", "delall"), lambda ctx, nl, a: policy_list_or_deleteall(ctx, nl, a, True)),
    (("list", "show", "lst"), _policy_list),
    (("get",), lambda ctx, nl, a: policy_get_or_delete(ctx, nl, a, False)),
    (("flush",), policy_flush),
    (("count",), spd_getinfo),
    (("set",), spd_setinfo),
    (("setdefault",), spd_setdefault),
    (("getdefault",), spd_getdefault),
)


def do_xfrm_policy(ctx: Ctx, nl, words: list[str]) -> int:
    return do_command(ctx, nl, words, POLICY_COMMANDS, _policy_list, "policy",
                      "Usage: ip xfrm policy { add | update } SELECTOR dir DIR … "
                      "(see ip-xfrm(8))\n")
