"""``ip xfrm state …`` (iproute2 ip/xfrm_state.c): parse a command line, send the request
ip sends, print the answer as ip prints it."""
from __future__ import annotations

import struct

from netlink_codec import xfrm as X
from netlink_codec.netlink import NLM_F_DUMP, NLM_F_REQUEST

from .args import (AF_INET, AF_UNSPEC, Argv, die, duparg, get_addr, get_prefix, get_u8, get_u16,
                   get_u32, invarg, missarg)
from .ipxfrm import (IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, Ctx, algotype_getbyname, do_command,
                     is_ipsec, is_ro, parse_encap_type, parse_id, parse_lifetime, parse_mark,
                     parse_mode, parse_reqid, parse_selector, sctx_bytes, state_info_print,
                     strxf_algotype, strxf_xfrmproto, xfrmproto_getbyname)
from .msg import Request, parse_tb

A = X.Xfrma
M = X.XfrmMsg
XFRM_ALGO_KEY_BUF_SIZE = 512


def _algo_key(name: str, key: str) -> bytes:
    """xfrm_algo_parse: "0x…" is hex (odd length gets a leading 0), anything else raw bytes."""
    if len(key) > 2 and key.startswith("0x"):
        p = key[2:]
        if len(p) % 2:
            p = "0" + p
        n = len(p) // 2
        if n > XFRM_ALGO_KEY_BUF_SIZE:
            invarg("ALGO-KEYMAT value makes buffer overflow\n", key)
        out = bytearray()
        for i in range(n):
            pair = p[2 * i:2 * i + 2]
            if not all(c in "0123456789abcdefABCDEF" for c in pair):
                invarg("ALGO-KEYMAT value is invalid", key)
            out.append(int(pair, 16))
        return bytes(out)
    raw = key.encode()
    if len(raw) > XFRM_ALGO_KEY_BUF_SIZE:
        invarg("ALGO-KEYMAT value makes buffer overflow\n", key)
    return raw


def _flag_parse(a: Argv, table: dict, width_msg: str, bits: int) -> int:
    """xfrm_state_flag_parse / xfrm_state_extra_flag_parse / xfrm_policy_flag_parse."""
    if len(a.cur) > 2 and a.cur.startswith("0x"):
        v = (get_u32 if bits == 32 else get_u8)(a.cur, 16)
        if v is None:
            invarg(width_msg, a.cur)
        return v
    flags = 0
    while True:
        bit = table.get(a.cur)
        if bit is None:
            a.prev()
            break
        flags |= bit
        if not a.next_ok():
            break
        a.next()
    return flags


STATE_FLAGS = {"noecn": 1, "decap-dscp": 2, "nopmtudisc": 4, "wildrecv": 8, "icmp": 16,
               "af-unspec": 32, "align4": 64, "esn": 128}
EXTRA_FLAGS = {"dont-encap-dscp": 1, "oseq-may-wrap": 2}


def state_modify(ctx: Ctx, nl, cmd: int, a: Argv) -> int:
    xs = X.XfrmUsersaInfo()
    xs.family = ctx.preferred_family
    for f in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
        setattr(xs.lft, f, X.XFRM_INF)
    req = Request(cmd, NLM_F_REQUEST)
    attrs = []   # attributes added inside the loop, in order
    replay_window = seq = oseq = seq_hi = oseq_hi = 0
    idp = aeadop = ealgop = aalgop = calgop = coap = sctxp = None
    extra_flags = 0
    mark = X.XfrmMark()
    output_mark = X.XfrmMark()
    if_id = None
    tfcpad = 0
    offload = None   # (ifindex, flags)
    sa_dir = pcpu = nat_ka = None
    iptfs: list[tuple[int, bytes]] = []
    while a.argc > 0:
        w = a.cur
        # the keyword this is, for ip; 6.15 does not know the newest ones: they reach the
        # ID branch below, which calls them "unknown"
        kw = None if w in NEWER_THAN_6_15 and ctx.iproute2 == "6.15" else w
        if kw == "mode":
            a.next()
            if a.cur == "iptfs" and ctx.iproute2 != "6.15":   # newer iproute2
                xs.mode = 5
            else:
                xs.mode = parse_mode(a)
        elif kw == "mark":
            mark = parse_mark(ctx, a)
        elif kw == "reqid":
            a.next()
            xs.reqid = parse_reqid(a)
        elif kw == "seq":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("SEQ value is invalid", a.cur)
            xs.seq = int.from_bytes(v.to_bytes(4, "big"), "little")   # get_be32
        elif kw in ("replay-window", "replay-seq", "replay-seq-hi", "replay-oseq",
                   "replay-oseq-hi"):
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg(f'value after "{w}" is invalid', a.cur)
            if w == "replay-window":
                replay_window = v
            elif w == "replay-seq":
                seq = v
            elif w == "replay-seq-hi":
                seq_hi = v
            elif w == "replay-oseq":
                oseq = v
            else:
                oseq_hi = v
        elif kw == "flag":
            a.next()
            xs.flags = xs.flags | _flag_parse(a, STATE_FLAGS, "FLAG value is invalid", 8)
        elif kw == "extra-flag":
            a.next()
            extra_flags |= _flag_parse(a, EXTRA_FLAGS, '"EXTRA-FLAG" is invalid', 32)
        elif kw == "sel":
            a.next()
            ctx.preferred_family = AF_UNSPEC
            parse_selector(ctx, a, xs.sel)
            ctx.preferred_family = xs.sel.family
        elif kw == "limit":
            a.next()
            parse_lifetime(a, xs.lft)
        elif kw == "encap":
            a.next()
            enc = X.XfrmEncapTmpl()
            enc.encap_type = parse_encap_type(a)
            a.next()
            v = get_u16(a.cur)
            if v is None:
                invarg('SPORT value after "encap" is invalid', a.cur)
            enc.encap_sport = v
            a.next()
            v = get_u16(a.cur)
            if v is None:
                invarg('DPORT value after "encap" is invalid', a.cur)
            enc.encap_dport = v
            a.next()
            oa = get_addr(a.cur, AF_UNSPEC)
            enc.encap_oa = X.XfrmAddress.of(oa.data)
            attrs.append((A.ENCAP, enc.encode()))
        elif kw == "coa":
            if coap:
                duparg("coa", a.cur)
            coap = w
            a.next()
            coa = get_prefix(a.cur, ctx.preferred_family)
            if coa.family == AF_UNSPEC:
                invarg('value after "coa" has an unrecognized address family', a.cur)
            attrs.append((A.COADDR, coa.data[:coa.bytelen].ljust(16, b"\0")))
        elif kw == "ctx":
            if sctxp:
                duparg("ctx", a.cur)
            sctxp = w
            a.next()
            attrs.append((A.SEC_CTX, sctx_bytes(a.cur)))
        elif kw == "offload" and ctx.iproute2 == "6.15":
            offload = _offload_6_15(ctx, a)
            sa_dir = offload[2]
        elif kw == "offload":
            a.next()
            flags = 0
            if a.cur == "crypto":        # newer iproute2: offload [crypto|packet]
                a.next()
            elif a.cur == "packet":
                flags |= X.XFRM_OFFLOAD_PACKET
                a.next()
            ifindex = 0
            if a.cur == "dev":
                a.next()
                ifindex = ctx.ll_name_to_index(a.cur)
                if not ifindex:
                    invarg('value after "offload dev" is invalid', a.cur)
                a.next()
            if a.cur == "dir":
                a.next()
                if a.cur == "in":
                    flags |= X.XFRM_OFFLOAD_INBOUND
                elif a.cur != "out":
                    invarg("DIR value is invalid", a.cur)
            else:
                invarg('value after "offload dir" is invalid', a.cur)
            offload = (ifindex, flags)
        elif kw == "output-mark":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg('value after "output-mark" is invalid', a.cur)
            output_mark.v = v
            if a.argc > 1:
                a.next()
                if a.cur == "mask":
                    a.next()
                    m = get_u32(a.cur)
                    if m is None:
                        invarg("mask value is invalid\n", a.cur)
                    output_mark.m = m
                else:
                    a.prev()
        elif kw == "if_id":
            a.next()
            if_id = get_u32(a.cur)
            if if_id is None:
                invarg('value after "if_id" is invalid', a.cur)
        elif kw == "tfcpad":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg('value after "tfcpad" is invalid', a.cur)
            tfcpad = v
        elif kw == "dir" and ctx.iproute2 == "6.15":
            a.next()
            sa_dir = parse_dir_6_15(a)
        elif kw == "dir":                      # newer iproute2: SA direction
            a.next()
            sa_dir = {"in": X.XFRM_SA_DIR_IN, "out": X.XFRM_SA_DIR_OUT}.get(a.cur)
            if sa_dir is None:
                invarg('value after "dir" is invalid', a.cur)
        elif kw == "pcpu-num":                 # newer iproute2
            a.next()
            pcpu = get_u32(a.cur)
            if pcpu is None:
                invarg('value after "pcpu-num" is invalid', a.cur)
        elif kw == "nat-keepalive-interval":   # newer iproute2
            a.next()
            nat_ka = get_u32(a.cur)
            if nat_ka is None:
                invarg('value after "nat-keepalive-interval" is invalid', a.cur)
        elif kw in _IPTFS:                     # newer iproute2: IP-TFS options
            t, width = _IPTFS[w]
            if width == 0:
                iptfs.append((t, b""))
            else:
                a.next()
                v = get_u32(a.cur) if width == 32 else get_u16(a.cur)
                if v is None:
                    invarg(f'value after "{w}" is invalid', a.cur)
                iptfs.append((t, v.to_bytes(width // 8, "little")))
        else:
            t = algotype_getbyname(w)
            if t in (A.ALG_AEAD, A.ALG_CRYPT, A.ALG_AUTH, A.ALG_AUTH_TRUNC, A.ALG_COMP):
                if t == A.ALG_AEAD:
                    if ealgop or aalgop or aeadop:
                        duparg("ALGO-TYPE", w)
                    aeadop = w
                elif t == A.ALG_CRYPT:
                    if ealgop or aeadop:
                        duparg("ALGO-TYPE", w)
                    ealgop = w
                elif t in (A.ALG_AUTH, A.ALG_AUTH_TRUNC):
                    if aalgop or aeadop:
                        duparg("ALGO-TYPE", w)
                    aalgop = w
                else:
                    if calgop:
                        duparg("ALGO-TYPE", w)
                    calgop = w
                if not a.next_ok():
                    missarg("ALGO-NAME")
                name = a.next()
                key = ""
                if t != A.ALG_COMP:
                    if not a.next_ok():
                        missarg("ALGO-KEYMAT")
                    key = a.next()
                extra = b""
                if t == A.ALG_AEAD:
                    if not a.next_ok():
                        missarg("ALGO-ICV-LEN")
                    v = get_u32(a.next())
                    if v is None:
                        invarg("ALGO-ICV-LEN value is invalid", a.cur)
                    extra = struct.pack("<I", v)
                elif t == A.ALG_AUTH_TRUNC:
                    if not a.next_ok():
                        missarg("ALGO-TRUNC-LEN")
                    v = get_u32(a.next())
                    if v is None:
                        invarg("ALGO-TRUNC-LEN value is invalid", a.cur)
                    extra = struct.pack("<I", v)
                keyb = _algo_key(name, key)
                raw_name = name.encode()[:63].ljust(64, b"\0")
                attrs.append((t, raw_name + struct.pack("<I", len(keyb) * 8) + extra + keyb))
            else:
                if idp:
                    invarg("unknown", w)
                idp = w
                fam = parse_id(ctx, a, xs.saddr, xs.id, False)
                if fam:
                    xs.family = fam
                if ctx.preferred_family == AF_UNSPEC:
                    ctx.preferred_family = xs.family
        a.advance()

    if xs.flags & X.XFRM_STATE_ESN and replay_window == 0:
        die("Error: esn flag set without replay-window.\n", -1)
    if replay_window > X.XFRMA_REPLAY_ESN_MAX:
        die(f"Error: replay-window ({replay_window}) > XFRMA_REPLAY_ESN_MAX "
            f"({X.XFRMA_REPLAY_ESN_MAX}).\n", -1)
    if offload is not None:
        flags = offload[1]
        if ctx.iproute2 == "6.15" and sa_dir == X.XFRM_SA_DIR_IN:
            flags |= X.XFRM_OFFLOAD_INBOUND      # one direction for the SA and its offload
        attrs.append((A.OFFLOAD_DEV, X.XfrmUserOffload(ifindex=offload[0],
                                                      flags=flags).encode()))
    if xs.flags & X.XFRM_STATE_ESN or replay_window > 32:
        esn = X.XfrmReplayStateEsn(bmp_len=(replay_window + 31) // 32, oseq=oseq, seq=seq,
                                   oseq_hi=oseq_hi, seq_hi=seq_hi, replay_window=replay_window)
        attrs.append((A.REPLAY_ESN_VAL, esn.encode()))
    else:
        if seq or oseq:
            attrs.append((A.REPLAY_VAL, X.XfrmReplayState(oseq=oseq, seq=seq).encode()))
        xs.replay_window = replay_window
    if extra_flags:
        attrs.append((A.SA_EXTRA_FLAGS, struct.pack("<I", extra_flags)))
    if not idp:
        die("Not enough information: ID is required\n", 1)
    if mark.m:
        attrs.append((A.MARK, mark.encode()))
    if if_id is not None:
        attrs.append((A.IF_ID, struct.pack("<I", if_id)))
    if tfcpad:
        attrs.append((A.TFCPAD, struct.pack("<I", tfcpad)))
    proto = xs.id.proto
    if is_ipsec(proto):
        if xs.mode not in (0, 1, 5) and not (xs.mode == 4 and proto == IPPROTO_ESP):
            die(f'MODE value is invalid with XFRM-PROTO value "{strxf_xfrmproto(proto)}"\n')
        if proto == IPPROTO_ESP:
            if calgop:
                die(f'ALGO-TYPE value "comp" is invalid with XFRM-PROTO value "esp"\n')
            if not ealgop and not aeadop:
                die('ALGO-TYPE value "enc" or "aead" is required with XFRM-PROTO value "esp"\n')
        elif proto == IPPROTO_AH:
            if ealgop or aeadop or calgop:
                die('ALGO-TYPE values "enc", "aead", and "comp" are invalid with XFRM-PROTO '
                    'value "ah"\n')
            if not aalgop:
                die('ALGO-TYPE value "auth" or "auth-trunc" is required with XFRM-PROTO value '
                    '"ah"\n')
        elif proto == IPPROTO_COMP:
            if ealgop or aalgop or aeadop:
                die('ALGO-TYPE values "enc", "auth", "auth-trunc", and "aead" are invalid with '
                    'XFRM-PROTO value "comp"\n')
            if not calgop:
                die('ALGO-TYPE value "comp" is required with XFRM-PROTO value "comp"\n')
    elif ealgop or aalgop or aeadop or calgop:
        die(f'ALGO is invalid with XFRM-PROTO value "{strxf_xfrmproto(proto)}"\n')
    if is_ro(proto):
        if xs.mode == 0:
            die(f'"mode" is required with XFRM-PROTO value "{strxf_xfrmproto(proto)}"\n')
        if xs.mode not in (2, 3):
            die(f'MODE value is invalid with XFRM-PROTO value "{strxf_xfrmproto(proto)}"\n')
        if not coap:
            die(f'"coa" is required with XFRM-PROTO value "{strxf_xfrmproto(proto)}"\n')
    elif coap:
        die(f'"coa" is invalid with XFRM-PROTO value "{strxf_xfrmproto(proto)}"\n')
    if output_mark.v:
        attrs.append((A.SET_MARK, struct.pack("<I", output_mark.v)))
    if output_mark.m:
        attrs.append((A.SET_MARK_MASK, struct.pack("<I", output_mark.m)))
    # attributes of newer iproute2 (appended after 6.1's, in current iproute2's order)
    if sa_dir is not None:
        attrs.append((A.SA_DIR, bytes([sa_dir])))
    if pcpu is not None:
        attrs.append((A.SA_PCPU, struct.pack("<I", pcpu)))
    if nat_ka is not None:
        attrs.append((A.NAT_KEEPALIVE_INTERVAL, struct.pack("<I", nat_ka)))
    attrs.extend(iptfs)
    if xs.family == AF_UNSPEC:
        xs.family = AF_INET
    req.fixed = xs.encode()
    for t, p in attrs:
        req.addattr(t, p)
    nl.talk(req.bytes())
    return 0


# state keywords iproute2 6.15 does not have yet (6.16 and later)
NEWER_THAN_6_15 = frozenset({"pcpu-num", "nat-keepalive-interval", "drop-time",
                             "reorder-window", "dont-frag", "init-delay", "max-queue-size",
                             "pkt-size"})


def parse_dir_6_15(a: Argv) -> int:
    d = {"in": X.XFRM_SA_DIR_IN, "out": X.XFRM_SA_DIR_OUT}.get(a.cur)
    if d is None:
        invarg('DIR value is not "in" or "out"', a.cur)
    return d


def _offload_6_15(ctx: Ctx, a: Argv):
    """``offload [crypto|packet] dev DEV dir DIR`` as 6.15 parses it: each keyword required
    in that order, and DIR is the SA's own direction (the later `dir` wins)."""
    a.next()
    flags = 0
    if a.cur in ("crypto", "packet"):
        if a.cur == "packet":
            flags |= X.XFRM_OFFLOAD_PACKET
        a.next()
    if a.cur != "dev":
        invarg("Missing dev keyword", a.cur)
    a.next()
    ifindex = ctx.ll_name_to_index(a.cur)
    if not ifindex:
        invarg("Invalid device name", a.cur)
    a.next()
    if a.cur != "dir":
        invarg("Missing DIR keyword", a.cur)
    a.next()
    return ifindex, flags, parse_dir_6_15(a)


_IPTFS = {"drop-time": (A.IPTFS_DROP_TIME, 32), "reorder-window": (A.IPTFS_REORDER_WINDOW, 16),
          "dont-frag": (A.IPTFS_DONT_FRAG, 0), "init-delay": (A.IPTFS_INIT_DELAY, 32),
          "max-queue-size": (A.IPTFS_MAX_QSIZE, 32), "pkt-size": (A.IPTFS_PKT_SIZE, 32)}


def state_allocspi(ctx: Ctx, nl, a: Argv) -> int:
    spi = X.XfrmUserspiInfo()
    spi.info.family = ctx.preferred_family
    idp = minp = maxp = None
    sa_dir = None
    mark = X.XfrmMark()
    while a.argc > 0:
        w = a.cur
        if w == "dir" and ctx.iproute2 == "6.15":
            a.next()
            sa_dir = parse_dir_6_15(a)
        elif w == "mode":
            a.next()
            spi.info.mode = parse_mode(a)
        elif w == "mark":
            mark = parse_mark(ctx, a)
        elif w == "reqid":
            a.next()
            spi.info.reqid = parse_reqid(a)
        elif w == "seq":
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg("SEQ value is invalid", a.cur)
            spi.info.seq = int.from_bytes(v.to_bytes(4, "big"), "little")
        elif w in ("min", "max"):
            if (minp if w == "min" else maxp):
                duparg(w, a.cur)
            a.next()
            v = get_u32(a.cur)
            if v is None:
                invarg(f'value after "{w}" is invalid', a.cur)
            if w == "min":
                minp, spi.min = w, v
            else:
                maxp, spi.max = w, v
        else:
            if idp:
                invarg("unknown", w)
            idp = w
            fam = parse_id(ctx, a, spi.info.saddr, spi.info.id, False)
            if fam:
                spi.info.family = fam
            if spi.info.id.spi:
                die('"spi" is invalid\n')
            if ctx.preferred_family == AF_UNSPEC:
                ctx.preferred_family = spi.info.family
        a.advance()
    if not idp:
        die("Not enough information: ID is required\n")
    if minp:
        if not maxp:
            die('"max" is missing\n')
        if spi.min > spi.max:
            die('value after "min" is larger than value after "max"\n')
    else:
        if maxp:
            die('"min" is missing\n')
        spi.min, spi.max = 0x100, 0x0FFFFFFF
        if spi.info.id.proto == IPPROTO_COMP:
            spi.max = 0xFFFF
    req = Request(M.ALLOCSPI, NLM_F_REQUEST)
    if mark.m & mark.v:
        req.pending.append((A.MARK, mark.encode()))
    if sa_dir is not None:
        req.pending.append((A.SA_DIR, bytes([sa_dir])))
    if spi.info.family == AF_UNSPEC:
        spi.info.family = AF_INET
    req.fixed = spi.encode()
    for t, p in req.pending:
        req.addattr(t, p)
    answer = nl.talk(req.bytes(), answer=True)
    print_state(ctx, answer, False)
    return 0


def print_state(ctx: Ctx, msg: bytes, nokeys: bool) -> int:
    """__do_xfrm_state_print."""
    length, mtype = struct.unpack_from("<IH", msg)
    if mtype not in (M.NEWSA, M.DELSA, M.UPDSA, M.EXPIRE):
        ctx.err("Not a state: %08x %08x %08x\n" % (length, mtype,
                                                   struct.unpack_from("<H", msg, 6)[0]))
        return 0
    if mtype == M.DELSA:
        fixed = X.XfrmUsersaId.size()
    elif mtype == M.EXPIRE:
        fixed = X.XfrmUserExpire.size()
    else:
        fixed = X.XfrmUsersaInfo.size()
    if length - 16 - ((fixed + 3) & ~3) < 0:
        ctx.err(f"BUG: wrong nlmsg len {length - 16 - ((fixed + 3) & ~3)}\n")
        return -1
    tb = parse_tb(msg, 16 + ((fixed + 3) & ~3), length)
    xs = None
    hard = None
    if mtype == M.EXPIRE:
        xe = X.XfrmUserExpire.decode(msg, 16)
        xs, hard = xe.state, xe.hard
    elif mtype != M.DELSA:
        xs = X.XfrmUsersaInfo.decode(msg, 16)
    if xs is not None and not _state_filter_match(ctx, xs):
        return 0
    ctx.w({M.DELSA: "Deleted ", M.UPDSA: "Updated ", M.EXPIRE: "Expired "}.get(mtype, ""))
    if mtype == M.DELSA:
        if A.SA not in tb:
            ctx.err("Buggy XFRM_MSG_DELSA: no XFRMA_SA\n")
            return -1
        xs = X.XfrmUsersaInfo.decode_padded(tb[A.SA])
    state_info_print(ctx, xs, tb, None, None, nokeys)
    if hard is not None:
        ctx.w(f"\thard {hard}{ctx.sl}")
    if ctx.oneline:
        ctx.w("\n")
    return 0


def _state_filter_match(ctx: Ctx, xs) -> bool:
    f = ctx.filter
    if not f.use:
        return True
    fx = f.xsinfo
    if fx.family != AF_UNSPEC and fx.family != xs.family:
        return False
    if f.id_src_mask and not _addr_match(bytes(xs.saddr), bytes(fx.saddr), f.id_src_mask):
        return False
    if f.id_dst_mask and not _addr_match(bytes(xs.id.daddr), bytes(fx.id.daddr), f.id_dst_mask):
        return False
    if (xs.id.proto ^ fx.id.proto) & f.id_proto_mask:
        return False
    if (xs.id.spi ^ fx.id.spi) & f.id_spi_mask:
        return False
    if (xs.mode ^ fx.mode) & f.mode_mask:
        return False
    if (xs.reqid ^ fx.reqid) & f.reqid_mask:
        return False
    if f.state_flags_mask and not (xs.flags & fx.flags):
        return False
    return True


def _addr_match(a1: bytes, a2: bytes, bits: int) -> bool:
    """xfrm_addr_match: True when the first ``bits`` bits are equal."""
    if bits < 0:
        bits &= 0xFFFFFFFF
    words, rem = bits >> 5, bits & 31
    if words and a1[:words * 4] != a2[:words * 4]:
        return False
    if rem:
        w1 = int.from_bytes(a1[words * 4:words * 4 + 4], "big")
        w2 = int.from_bytes(a2[words * 4:words * 4 + 4], "big")
        mask = (0xFFFFFFFF << (32 - rem)) & 0xFFFFFFFF
        if (w1 ^ w2) & mask:
            return False
    return True


def state_get_or_delete(ctx: Ctx, nl, a: Argv, delete: bool) -> int:
    xsid = X.XfrmUsersaId()
    xsid.family = ctx.preferred_family
    req = Request(M.DELSA if delete else M.GETSA, NLM_F_REQUEST)
    idp = None
    mark = X.XfrmMark()
    while a.argc > 0:
        if a.cur == "mark":
            mark = parse_mark(ctx, a)
        else:
            if idp:
                invarg("unknown", a.cur)
            idp = a.cur
            xid = X.XfrmId()
            saddr = X.XfrmAddress()
            fam = parse_id(ctx, a, saddr, xid, False)
            if fam:
                xsid.family = fam
            xsid.daddr = xid.daddr
            xsid.spi = xid.spi
            xsid.proto = xid.proto
            req.pending.append((A.SRCADDR, bytes(saddr)))
        a.advance()
    if mark.m & mark.v:
        req.pending.append((A.MARK, mark.encode()))
    if xsid.family == AF_UNSPEC:
        xsid.family = AF_INET
    req.fixed = xsid.encode()
    for t, p in req.pending:
        req.addattr(t, p)
    if delete:
        nl.talk(req.bytes())
    else:
        print_state(ctx, nl.talk(req.bytes(), answer=True), False)
    return 0


def state_list_or_deleteall(ctx: Ctx, nl, a: Argv, deleteall: bool) -> int:
    f = ctx.filter
    if a.argc > 0 or ctx.preferred_family != AF_UNSPEC:
        f.use = True
    f.xsinfo.family = ctx.preferred_family
    idp = None
    nokeys = False
    while a.argc > 0:
        w = a.cur
        if w == "nokeys":
            nokeys = True
        elif w == "mode":
            a.next()
            f.xsinfo.mode = parse_mode(a)
            f.mode_mask = 0xFF
        elif w == "reqid":
            a.next()
            f.xsinfo.reqid = parse_reqid(a)
            f.reqid_mask = 0xFFFFFFFF
        elif w == "flag":
            a.next()
            f.xsinfo.flags = f.xsinfo.flags | _flag_parse(a, STATE_FLAGS,
                                                          "FLAG value is invalid", 8)
            f.state_flags_mask = 0xFF
        else:
            if idp:
                invarg("unknown", w)
            idp = w
            fam = parse_id(ctx, a, f.xsinfo.saddr, f.xsinfo.id, True)
            if fam:
                f.xsinfo.family = fam
            if ctx.preferred_family == AF_UNSPEC:
                ctx.preferred_family = f.xsinfo.family
        a.advance()
    if deleteall:
        while True:
            buf = bytearray()
            count = 0
            for msg in nl.dump(Request(M.GETSA, NLM_F_DUMP | NLM_F_REQUEST).bytes()):
                if struct.unpack_from("<H", msg, 4)[0] != M.NEWSA:
                    continue
                xs = X.XfrmUsersaInfo.decode(msg, 16)
                if not _state_filter_match(ctx, xs) or xs.id.proto in (4, 41):
                    continue
                nl.seq += 1
                d = Request(M.DELSA, NLM_F_REQUEST, seq=nl.seq)
                d.fixed = X.XfrmUsersaId(daddr=xs.id.daddr, spi=xs.id.spi, family=xs.family,
                                         proto=xs.id.proto).encode()
                d.addattr(A.SRCADDR, bytes(xs.saddr))
                tb = parse_tb(msg, 16 + X.XfrmUsersaInfo.size(), len(msg), raw=True)
                if A.MARK in tb:
                    # ip copies rta_len bytes from the payload start (4 bytes past the mark)
                    start = tb[A.MARK] + 4
                    d.addattr(A.MARK, msg[start:start + 12].ljust(12, b"\0"))
                buf += d.bytes()
                count += 1
            if count == 0:
                break
            nl.send_check(bytes(buf), "Failed to send delete-all request\n")
        return 0
    af = X.XfrmAddressFilter(saddr=f.xsinfo.saddr, daddr=f.xsinfo.id.daddr,
                             family=f.xsinfo.family, splen=f.id_src_mask & 0xFF,
                             dplen=f.id_dst_mask & 0xFF)
    req = Request(M.GETSA, NLM_F_DUMP | NLM_F_REQUEST, fixed_len=0)
    if f.xsinfo.id.proto:
        req.addattr(A.PROTO, bytes([f.xsinfo.id.proto]))
    req.addattr(A.ADDRESS_FILTER, af.encode())
    for msg in nl.dump(req.bytes()):
        print_state(ctx, msg, nokeys)
    return 0


def sad_getinfo(ctx: Ctx, nl, a: Argv) -> int:
    req = Request(M.GETSADINFO, NLM_F_REQUEST)
    req.fixed = struct.pack("<I", 0xFFFFFFFF)
    ans = nl.talk(req.bytes(), answer=True)
    tb = parse_tb(ans, 20, len(ans))
    if X.XfrmaSad.CNT in tb:
        ctx.w("\t SAD count %d" % int.from_bytes(tb[X.XfrmaSad.CNT][:4], "little"))
    else:
        ctx.w("BAD SAD info returned\n")
        return 1
    if ctx.show_stats and X.XfrmaSad.HINFO in tb:
        h = tb[X.XfrmaSad.HINFO]
        cnt, mx = struct.unpack_from("<ii", h.ljust(8, b"\0"))
        ctx.w(f" (buckets count {cnt} Max {mx})")
    ctx.w("\n")
    return 0


def state_flush(ctx: Ctx, nl, a: Argv) -> int:
    proto = 0
    protop = None
    while a.argc > 0:
        if a.cur == "proto":
            if protop:
                duparg("proto", a.cur)
            protop = a.cur
            a.next()
            p = xfrmproto_getbyname(a.cur)
            if p < 0:
                invarg("XFRM-PROTO value is invalid", a.cur)
            proto = p
        else:
            invarg("unknown", a.cur)
        a.advance()
    req = Request(M.FLUSHSA, NLM_F_REQUEST)
    req.fixed = bytes([proto])
    nl.talk(req.bytes())
    return 0


def _state_list(ctx: Ctx, nl, a: Argv) -> int:
    return state_list_or_deleteall(ctx, nl, a, False)


# do_xfrm_state's commands, in the order it tries them
STATE_COMMANDS = (
    (("add",), lambda ctx, nl, a: state_modify(ctx, nl, M.NEWSA, a)),
    (("update",), lambda ctx, nl, a: state_modify(ctx, nl, M.UPDSA, a)),
    (("allocspi",), state_allocspi),
    (("delete",), lambda ctx, nl, a: state_get_or_delete(ctx, nl, a, True)),
    (("deleteall", "delall"), lambda ctx, nl, a: state_list_or_deleteall(ctx, nl, a, True)),
    (("list", "show", "lst"), _state_list),
    (("get",), lambda ctx, nl, a: state_get_or_delete(ctx, nl, a, False)),
    (("flush",), state_flush),
    (("count",), sad_getinfo),
)


def do_xfrm_state(ctx: Ctx, nl, words: list[str]) -> int:
    return do_command(ctx, nl, words, STATE_COMMANDS, _state_list, "state",
                      "Usage: ip xfrm state { add | update } ID [ ALGO-LIST ] … "
                      "(see ip-xfrm(8))\n")
