"""Differential: policy requests (as raw bytes) to a fresh real-kernel netns and to xfrmd;
the replies AND the events a POLICY+EXPIRE listener receives must be byte-identical once port
ids and add times are normalised. Each case is a sequence of requests starting from an empty
SPD; a case is one line in CASES."""
from __future__ import annotations

import select
import time
import struct

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.conftest import require
from tests.differential.test_sa_validation import FakeXfrm, RealXfrm, _can_netns
from tests.sad_helpers import REQ_ACK, A, M, Nl, addr

GROUPS = (1 << (X.XfrmNlGrp.POLICY - 1)) | (1 << (X.XfrmNlGrp.EXPIRE - 1))
INF = X.XFRM_INF


def sel(src="10.0.0.0", dst="10.0.1.0", ps=24, pd=24, family=X.AF_INET, proto=0, sport=0,
        dport=0, ifindex=0, junk=b"\0\0\0") -> bytes:
    return struct.pack("=16s16sHHHHHBBB3siI", addr(dst), addr(src), dport,
                       0xFFFF if dport else 0, sport, 0xFFFF if sport else 0, family, pd, ps,
                       proto, junk, ifindex, 0)


def info(s=None, dir=X.XFRM_POLICY_OUT, priority=0, index=0, action=0, flags=0, share=0,
         lft=(INF, INF, INF, INF, 0, 0, 0, 0)) -> bytes:
    s = sel() if s is None else s
    return s + struct.pack("=8Q4QIIBBBB4x", *lft, 0, 0, 0, 0, priority, index, dir, action,
                           flags, share)


def pid(s=None, dir=X.XFRM_POLICY_OUT, index=0) -> bytes:
    return (sel() if s is None else s) + struct.pack("=IB3x", index, dir)


def tmpl(src="192.0.2.1", dst="192.0.2.2", proto=X.IPPROTO_ESP, mode=1, reqid=0, family=0,
         optional=0, spi=0) -> bytes:
    return struct.pack("=16s4sB3xH2x16sIBBBxIII", addr(dst), struct.pack(">I", spi), proto,
                       family, addr(src), reqid, mode, 0, optional, ~0 & 0xFFFFFFFF,
                       ~0 & 0xFFFFFFFF, ~0 & 0xFFFFFFFF)


def m(t, payload, flags=REQ_ACK) -> bytes:
    return N.encode_msg(t, flags, 7, 4242, payload)


def add(*attrs, t=M.NEWPOLICY, **kw) -> bytes:
    return m(t, info(**kw) + b"".join(attrs))


def ptype(t) -> bytes:
    return N.nla(A.POLICY_TYPE, struct.pack("=BxHBx", t, 0, 0))


WAIT = b"wait"
MARK = N.nla(A.MARK, struct.pack("=II", 5, 0xF))
IFID = N.nla_u32(A.IF_ID, 9)
TMPL1 = N.nla(A.TMPL, tmpl())
DUMP = m(M.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP)
COUNT = m(M.GETSPDINFO, struct.pack("=I", 0xFFFFFFFF), N.NLM_F_REQUEST)
V6 = sel("2001:db8::", "2001:db8:1::", 64, 64, X.AF_INET6)

CASES = {
    # verify_newpolicy_info
    "share 4": [add(share=4)],
    "action 2": [add(action=2)],
    "family 0": [add(s=sel(family=0))],
    "family 3": [add(s=sel(family=3))],
    "v4 prefix 33": [add(s=sel(ps=33))],
    "v6 prefix 129": [add(s=sel("2001:db8::", "2001:db8::", 129, 64, X.AF_INET6))],
    "dir 3": [add(dir=3)],
    "dir 7": [add(dir=7)],
    "index mismatch": [add(index=17, dir=0)],
    "index match": [add(index=17, dir=1), DUMP],
    "short header": [m(M.NEWPOLICY, bytes(100))],
    "sec ctx bad len": [add(N.nla(A.SEC_CTX, struct.pack("=HHBBH", 30, 8, 1, 1, 4) + b"abcd"))],
    "sec ctx ok dropped": [add(N.nla(A.SEC_CTX, struct.pack("=HHBBH", 13, 8, 1, 1, 5) + b"ctx1\0")),
                           DUMP],
    # xfrm_policy_construct
    "ptype 2": [add(ptype(2))],
    "ptype sub": [add(ptype(1)), DUMP],
    "7 templates": [add(N.nla(A.TMPL, tmpl() * 7))],
    "optional tunnel out": [add(N.nla(A.TMPL, tmpl(optional=1)))],
    "optional tunnel in": [add(N.nla(A.TMPL, tmpl(optional=1)), dir=0), DUMP],
    "transport family change": [add(N.nla(A.TMPL, tmpl(mode=0, family=X.AF_INET6)))],
    "mode 6": [add(N.nla(A.TMPL, tmpl(mode=6)))],
    "tmpl family 3": [add(N.nla(A.TMPL, tmpl(family=3)))],
    "tmpl proto udp": [add(N.nla(A.TMPL, tmpl(proto=17)))],
    "tmpl proto any": [add(N.nla(A.TMPL, tmpl(proto=255))), DUMP],
    "tmpl proto routing": [add(N.nla(A.TMPL, tmpl(proto=43, mode=2)))],
    "tmpl short attr": [add(N.nla(A.TMPL, tmpl()[:40]))],
    "tmpl 1.5 templates": [add(N.nla(A.TMPL, tmpl() + tmpl()[:20])), DUMP],
    "tmpl family filled": [add(N.nla(A.TMPL, tmpl(family=0))), DUMP],
    "two templates": [add(N.nla(A.TMPL, tmpl() + tmpl(proto=X.IPPROTO_COMP, mode=0))), DUMP],
    # insert / update / lookups
    "add": [add(TMPL1, priority=5), DUMP, COUNT],
    "duplicate": [add(), add()],
    "duplicate other prio": [add(), add(priority=9)],
    "duplicate echoes filled template family": [add(), add(TMPL1)],
    "same sel other dir": [add(), add(dir=0), add(dir=2), DUMP, COUNT],
    "same sel other mark": [add(), add(MARK), DUMP],
    "same sel other if_id": [add(), add(IFID), DUMP],
    "same sel other type": [add(), add(ptype(1)), DUMP],
    "selector padding differs": [add(), add(s=sel(junk=b"abc")), DUMP],
    "update missing inserts": [add(t=M.UPDPOLICY), DUMP],
    "update keeps index, moves to head": [add(), add(s=sel("10.9.0.0")), add(priority=3, t=M.UPDPOLICY),
                                          DUMP],
    "user index taken": [add(index=9), add(s=sel("10.9.0.0"), index=9), DUMP],
    "v6": [add(TMPL1, s=V6), DUMP],
    "ports and proto": [add(s=sel("10.0.0.1", "10.0.0.2", 32, 32, proto=6, sport=22, dport=80)), DUMP],
    "ifindex in selector": [add(s=sel(ifindex=1)), DUMP],
    "mark and if_id": [add(MARK, IFID, action=1, flags=1), DUMP],
    "lifetimes kept": [add(lft=(1, 2, 3, 4, 50, 60, 70, 80)), DUMP],
    "get by sel": [add(TMPL1), m(M.GETPOLICY, pid(), N.NLM_F_REQUEST)],
    "get by sel missing": [m(M.GETPOLICY, pid(), N.NLM_F_REQUEST)],
    "get by index": [add(), m(M.GETPOLICY, pid(s=bytes(56), index=1), N.NLM_F_REQUEST)],
    "get by index wrong dir": [add(), m(M.GETPOLICY, pid(s=bytes(56), index=1, dir=0), N.NLM_F_REQUEST)],
    "get bad dir": [m(M.GETPOLICY, pid(dir=5))],
    "get bad ptype": [m(M.GETPOLICY, pid() + ptype(3))],
    "get mark must match": [add(MARK), m(M.GETPOLICY, pid()), m(M.GETPOLICY, pid() + MARK)],
    "get if_id must match": [add(IFID), m(M.GETPOLICY, pid()), m(M.GETPOLICY, pid() + IFID)],
    "get sub": [add(ptype(1)), m(M.GETPOLICY, pid()), m(M.GETPOLICY, pid() + ptype(1))],
    "delete by sel": [add(TMPL1, MARK), m(M.DELPOLICY, pid() + MARK), DUMP, COUNT],
    "delete by index": [add(TMPL1), m(M.DELPOLICY, pid(s=bytes(56), index=1)), DUMP],
    "delete twice": [add(), m(M.DELPOLICY, pid()), m(M.DELPOLICY, pid())],
    "delete by index no ack": [add(), m(M.DELPOLICY, pid(s=bytes(56), index=1), N.NLM_F_REQUEST)],
    # flush
    "flush empty": [m(M.FLUSHPOLICY, b"")],
    "flush": [add(), add(dir=0), add(ptype(1), dir=2), m(M.FLUSHPOLICY, b""), DUMP, COUNT],
    "flush sub": [add(), add(ptype(1)), m(M.FLUSHPOLICY, ptype(1)), DUMP],
    "flush bad type": [m(M.FLUSHPOLICY, ptype(5))],
    "index generator survives flush": [add(), m(M.FLUSHPOLICY, b""), add(), add(dir=0), DUMP],
    # POLEXPIRE from userspace
    "polexpire soft": [add(TMPL1), m(M.POLEXPIRE, info() + bytes(8)), DUMP],
    "polexpire hard": [add(TMPL1), m(M.POLEXPIRE, info() + b"\x01" + bytes(7)), DUMP],
    "polexpire missing": [m(M.POLEXPIRE, info() + bytes(8))],
    "polexpire by index": [add(), m(M.POLEXPIRE, info(index=1) + b"\x01" + bytes(7)), COUNT],
    # hash growth in GETSPDINFO
    # (the kernel resizes its tables from a work queue: WAIT lets it run before COUNT)
    "seven out policies": [add(s=sel(f"10.0.{i}.0")) for i in range(7)] + [WAIT, COUNT],
    "eight out policies": [add(s=sel(f"10.0.{i}.0")) for i in range(8)] + [WAIT, COUNT],
    # (beyond the first doubling the kernel's result depends on when its work runs: a resize
    # pending while more policies arrive doubles only once; xfrmd resizes at once)
    "nine in policies": [add(s=sel(f"10.0.{i}.0"), dir=0) for i in range(9)] + [WAIT, COUNT],
    # attribute policy
    "if_id short": [add(N.nla(A.IF_ID, b"\1\0"))],
    "mark short": [add(N.nla(A.MARK, b"\1\0\0\0"))],
    "sa_dir on policy": [add(N.nla_u8(A.SA_DIR, 1))],
    "unknown attr": [add(N.nla(60, b"x")), DUMP],
    # more selectors, templates and lookups
    "v6 ports proto": [add(s=sel("2001:db8::1", "2001:db8::2", 128, 128, X.AF_INET6, proto=17,
                                 sport=500, dport=4500)), DUMP],
    "v6 icmp type code": [add(s=sel("2001:db8::", "::", 32, 0, X.AF_INET6, proto=58, sport=135,
                                    dport=0)), DUMP],
    "any selector": [add(s=sel("0.0.0.0", "0.0.0.0", 0, 0)), DUMP],
    "v4 prefix 32 and 0": [add(s=sel(ps=32, pd=0)), DUMP],
    "v6 dst prefix 129": [add(s=sel("2001:db8::", "2001:db8::", 64, 129, X.AF_INET6))],
    "v4 dst prefix 33": [add(s=sel(pd=33))],
    "block icmp localok": [add(action=1, flags=3), DUMP],
    "share unique": [add(share=3), DUMP],
    "priority ordering": [add(priority=9), add(s=sel("10.2.0.0"), priority=1),
                          add(s=sel("10.3.0.0"), priority=5), DUMP],
    "six templates": [add(N.nla(A.TMPL, tmpl(mode=0) * 6)), DUMP],
    "template level use": [add(N.nla(A.TMPL, tmpl(optional=1, mode=0)), dir=1), DUMP],
    "template fwd optional tunnel": [add(N.nla(A.TMPL, tmpl(optional=1)), dir=2), DUMP],
    "template reqid spi": [add(N.nla(A.TMPL, tmpl(reqid=77, spi=0x1234))), DUMP],
    "template v6 tunnel in v4 policy": [add(N.nla(A.TMPL, tmpl("2001:db8::1", "2001:db8::2",
                                                               family=X.AF_INET6))), DUMP],
    "template beet": [add(N.nla(A.TMPL, tmpl(mode=4))), DUMP],
    "template ah": [add(N.nla(A.TMPL, tmpl(proto=X.IPPROTO_AH))), DUMP],
    "template empty attr": [add(N.nla(A.TMPL, b"")), DUMP],
    "ptype short": [add(N.nla(A.POLICY_TYPE, b"\1"))],
    "ptype main explicit": [add(ptype(0)), DUMP],
    "sub counts": [add(ptype(1)), add(ptype(1), dir=0), add(), COUNT],
    "get by index with mark": [add(MARK), m(M.GETPOLICY, pid(s=bytes(56), index=1) + MARK,
                                           N.NLM_F_REQUEST),
                               m(M.GETPOLICY, pid(s=bytes(56), index=1), N.NLM_F_REQUEST)],
    "get by index sub": [add(ptype(1)), m(M.GETPOLICY, pid(s=bytes(56), index=1), N.NLM_F_REQUEST),
                         m(M.GETPOLICY, pid(s=bytes(56), index=1) + ptype(1), N.NLM_F_REQUEST)],
    "get short": [m(M.GETPOLICY, pid()[:40])],
    "delete short": [m(M.DELPOLICY, pid()[:40])],
    "delete wrong dir": [add(), m(M.DELPOLICY, pid(dir=0))],
    "delete by index wrong dir": [add(), m(M.DELPOLICY, pid(s=bytes(56), index=1, dir=2))],
    "delete sec ctx no match": [add(), m(M.DELPOLICY, pid() + N.nla(
        A.SEC_CTX, struct.pack("=HHBBH", 13, 8, 1, 1, 5) + b"ctx1\0")), DUMP],
    "update other dir inserts": [add(), add(dir=0, t=M.UPDPOLICY), DUMP],
    "update sub keeps main": [add(), add(ptype(1), t=M.UPDPOLICY, priority=4), DUMP],
    "update user index": [add(), add(index=1, priority=2, t=M.UPDPOLICY), DUMP],
    "user index other dir bits": [add(index=0x100, dir=0), add(index=0x109, s=sel("10.9.0.0")),
                                  add(s=sel("10.10.0.0"), dir=2), DUMP],
    "polexpire short": [add(), m(M.POLEXPIRE, info())],
    "flush twice": [add(), m(M.FLUSHPOLICY, b""), m(M.FLUSHPOLICY, b"")],
    "flush main leaves sub": [add(ptype(1)), add(), m(M.FLUSHPOLICY, ptype(0)), DUMP, COUNT],
    "lifetime limits soft above hard": [add(lft=(100, 10, 7, 3, 50, 5, 0, 0)), DUMP],
    "mark zero mask": [add(N.nla(A.MARK, struct.pack("=II", 5, 0))), DUMP],
    "mark sanitized lookups": [add(N.nla(A.MARK, struct.pack("=II", 0x15, 0xF))),
                               m(M.GETPOLICY, pid() + N.nla(A.MARK, struct.pack("=II", 0x15, 0xF))),
                               m(M.GETPOLICY, pid() + MARK),
                               add(N.nla(A.MARK, struct.pack("=II", 0x25, 0xF))),
                               m(M.DELPOLICY, pid() + N.nla(A.MARK, struct.pack("=II", 5, 0xF))),
                               DUMP],
    "dump split": [add(TMPL1, s=sel(f"10.{i // 200}.{i % 200}.0"), priority=i % 7)
                   for i in range(150)] + [DUMP],
    "defaults": [m(M.GETDEFAULT, bytes(4), N.NLM_F_REQUEST),
                 m(M.SETDEFAULT, struct.pack("=BBB", 1, 2, 1)),
                 m(M.GETDEFAULT, bytes(4), N.NLM_F_REQUEST),
                 m(M.SETDEFAULT, struct.pack("=BBB", 0, 0, 0)),
                 m(M.GETDEFAULT, bytes(4), N.NLM_F_REQUEST)],
    "defaults bad value": [m(M.SETDEFAULT, struct.pack("=BBB", 3, 0, 0)),
                           m(M.GETDEFAULT, bytes(4), N.NLM_F_REQUEST)],
    "spdinfo thresholds then count": [
        m(M.NEWSPDINFO, bytes(4) + N.nla(3, struct.pack("=BB", 8, 8)) +
          N.nla(4, struct.pack("=BB", 64, 64))),
        add(), add(s=V6), COUNT],
    "add echo": [m(M.NEWPOLICY, info() + TMPL1, REQ_ACK | N.NLM_F_ECHO)],
    "update echo": [add(), m(M.UPDPOLICY, info(priority=3), REQ_ACK | N.NLM_F_ECHO)],
    "delete echo": [add(MARK), m(M.DELPOLICY, pid() + MARK, REQ_ACK | N.NLM_F_ECHO)],
    "flush echo": [add(), m(M.FLUSHPOLICY, b"", REQ_ACK | N.NLM_F_ECHO)],
    "dump with attrs": [add(), add(ptype(1), dir=0),
                        m(M.GETPOLICY, ptype(1), N.NLM_F_REQUEST | N.NLM_F_DUMP)],
    "attr len 2": [m(M.NEWPOLICY, info() + struct.pack("=HH", 2, 16))],
    "attr overruns": [m(M.NEWPOLICY, info() + struct.pack("=HH", 100, A.TMPL) + tmpl()[:20])],
    "trailing junk": [m(M.NEWPOLICY, info() + b"\1\2")],
    "tmpl attr oversize mark": [add(N.nla(A.MARK, struct.pack("=III", 1, 1, 1))), DUMP],
    "mark zero mask get": [add(N.nla(A.MARK, struct.pack("=II", 5, 0))),
                           m(M.GETPOLICY, pid() + N.nla(A.MARK, struct.pack("=II", 5, 0))),
                           m(M.DELPOLICY, pid()), DUMP],
    # xfrm_dev_policy_add, or its !CONFIG_XFRM_OFFLOAD stub that ignores the request
    "offload flags 0": [add(N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", 1, 0))), DUMP],
    "offload packet lo": [add(N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", 1, X.XFRM_OFFLOAD_PACKET)),
                              TMPL1), DUMP],
    "offload packet no dev": [add(N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", 99, X.XFRM_OFFLOAD_PACKET)),
                                  TMPL1), DUMP],
}


@pytest.fixture
def real():
    """A fresh namespace per case: the index generator is never reset by a flush."""
    require(_can_netns(), "needs root and iproute2 for a real-kernel netns")
    r = RealXfrm()
    r.listener = r.open(GROUPS)
    yield r
    r.listener.close()
    r.close()


def _drain(sock) -> list[bytes]:
    out = []
    while select.select([sock], [], [], 0.05)[0]:
        out.append(sock.recv(65536))
    return out


def _norm(datagrams: list[bytes]) -> list[tuple]:
    """(type, bytes) per message: header pid zeroed, curlft.add_time zeroed in policy
    messages (the emulated clock is not the kernel's)."""
    out = []
    for d in datagrams:
        out.append(("datagram", len(d)))     # dumps are compared datagram by datagram
        for h in N.split_messages(d):
            raw = bytearray(d[h.offset:h.offset + h.len])
            struct.pack_into("=I", raw, 12, 0)
            base = {M.NEWPOLICY: 16, M.UPDPOLICY: 16, M.POLEXPIRE: 16}.get(h.type)
            if h.type == M.DELPOLICY:
                base = 16 + 64 + 4
            if base is not None and len(raw) >= base + 168:
                struct.pack_into("=Q", raw, base + 56 + 64 + 16, 0)
            out.append((h.type, bytes(raw)))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_policy_case(real, name):
    fake = FakeXfrm()
    listener = Nl(fake.nl.k, groups=(X.XfrmNlGrp.POLICY, X.XfrmNlGrp.EXPIRE), pid=777)
    for req in CASES[name]:
        if req == WAIT:
            _settle(real)
            continue
        got_real = _norm(real.send(req))
        got_fake = _norm(fake.send(req))
        assert got_fake == got_real, _explain("reply", req, got_real, got_fake)
    ev_real = _norm(_drain(real.listener))
    ev_fake = _norm(listener.recv_all())
    assert ev_fake == ev_real, _explain("events", b"", ev_real, ev_fake)


def _settle(real) -> None:
    """Wait until the kernel's resize work has run: GETSPDINFO answers the same twice in a
    row, 0.2 s apart (at most 5 s)."""
    last = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _norm(real.send(COUNT))
        if now == last:
            return
        last = now


def _explain(what, req, real, fake) -> str:
    def show(msgs):
        return [(t, r.hex() if isinstance(r, bytes) else r) for t, r in msgs]
    return f"{what} to {req[:20].hex()}…\nreal: {show(real)}\nfake: {show(fake)}"


def test_enough_cases():
    assert len(CASES) >= 60


def test_first_dump_on_a_fresh_socket_is_goodsize(real):
    """netlink_dump's first batch is built before any read: NLMSG_GOODSIZE, then the later
    batches use the read size the reader showed (capped at SKB_WITH_OVERHEAD(32768))."""
    fake = FakeXfrm()
    for i in range(150):
        req = add(TMPL1, s=sel(f"10.{i // 200}.{i % 200}.0"))
        assert _norm(fake.send(req)) == _norm(real.send(req))
    fresh_real = real.open()
    fresh_fake = Nl(fake.nl.k, pid=888)
    try:
        fresh_real.send(DUMP)
        got_real = []
        while select.select([fresh_real], [], [], 0.2)[0]:
            got_real.append(fresh_real.recv(65536))
        got_fake = fresh_fake.send(DUMP)
    finally:
        fresh_real.close()
    assert [len(d) for d in got_real][0] <= 3776 < len(got_real[1])
    assert _norm(got_fake) == _norm(got_real)
