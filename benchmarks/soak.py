"""``python3 -m benchmarks.soak [--quick | --long] [--datagrams N] [--clients K] [--seed S]``

A soak and fuzz run against a real ``xfrmd serve`` process, through the real transport
(xfrmd.client sockets on the AF_UNIX connection):

* **fuzz**: K concurrent clients each send mutated datagrams of every message type — every
  XFRM_MSG_*, rtnetlink link/addr/route/rule/netconf/neigh/nsid, genetlink ctrl and ethtool —
  built from the seeds in ``soak_seeds.jsonl`` (what ``ip``, ``ethtool`` and a key manager
  send; ``--record-seeds`` records them again) by a seeded mutator: bit flips, byte
  overwrites, truncations, lying attribute lengths, attributes spliced in from other seeds,
  nested garbage, duplicated attributes, swapped message types and flags. A request with an
  intact header carries NLM_F_ACK and a unique seq: it must get exactly one final answer
  (NLMSG_ERROR or NLMSG_DONE) with that seq, and every answer must carry the client's port
  id (no crossed replies). A datagram whose header lies (length, several messages) is
  followed by an NLMSG_NOOP probe that must be ACKed. A few connections send truncated
  control frames; the server must close them and go on serving.
* **consistency**: each client, in its own namespace, adds and deletes SAs and policies
  (some requests invalid on purpose) and keeps what the successful ones imply; the SAD and
  SPD dumps must list exactly that.
* the server's RSS (``xfrmd ctl stats``) before and after, and the number of "internal
  error" answers, which must be 0: every handler failure must be the kernel's errno.

Exit status 0 when every check held. ``--quick`` is the CI size (tests/test_soak.py).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing as mp
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "soak_seeds.jsonl")
SEED_SCRIPT = os.path.join(HERE, "soak_seeds.sh")

NETLINK_ROUTE, NETLINK_XFRM, NETLINK_GENERIC = 0, 6, 16
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
F_REQUEST, F_MULTI, F_ACK = 0x1, 0x2, 0x4
F_DUMP = 0x300
NLA_F_NESTED = 0x8000
HDR = struct.Struct("=IHHII")


# -- seeds ---------------------------------------------------------------------------------

def load_seeds() -> dict[int, list[bytes]]:
    """The recorded seeds by protocol, plus key-manager messages ``ip`` never sends."""
    seeds: dict[int, list[bytes]] = {NETLINK_ROUTE: [], NETLINK_XFRM: [], NETLINK_GENERIC: []}
    with open(SEEDS) as f:
        for line in f:
            r = json.loads(line)
            seeds[r["proto"]].append(bytes.fromhex(r["data"]))
    seeds[NETLINK_XFRM] += _xfrm_extra()
    seeds[NETLINK_ROUTE] += _rtnl_extra()
    seeds[NETLINK_GENERIC] += _genl_extra()
    return seeds


def _rtnl_extra() -> list[bytes]:
    """RTM_SETLINK (ip uses NEWLINK for `ip link set`; pyroute2 and others send SETLINK) and
    RTM_DELNSID."""
    from netlink_codec.netlink import encode_msg, nla
    ifi = struct.pack("=BxHiII", 0, 0, 2, 1, 1)
    setlink = (ifi + nla(4, struct.pack("=I", 1400)) + nla(3, b"eth0\0") + nla(16, b"\6")
               + nla(17, b"\1") + nla(13, struct.pack("=I", 1000)))
    delnsid = struct.pack("=Bxxx", 0) + nla(1, struct.pack("=i", 7))
    return [encode_msg(19, F_REQUEST | F_ACK, 1, 0, setlink), encode_msg(89, F_REQUEST | F_ACK, 1, 0, delnsid)]


def _genl_extra() -> list[bytes]:
    """nlctrl: GETFAMILY by id and as a dump, GETPOLICY of ethtool."""
    from netlink_codec.netlink import encode_msg, nla
    hdr = lambda cmd: struct.pack("=BBH", cmd, 2, 0)   # noqa: E731
    return [encode_msg(16, F_REQUEST | F_ACK, 1, 0, hdr(3) + nla(1, struct.pack("=H", 20))),
            encode_msg(16, F_REQUEST | F_DUMP, 1, 0, hdr(3)),
            encode_msg(16, F_REQUEST | F_DUMP, 1, 0, hdr(10) + nla(2, b"ethtool\0")
                       + nla(10, struct.pack("=I", 1)))]


def _xfrm_extra() -> list[bytes]:
    """NEWAE, GETAE, EXPIRE, POLEXPIRE, ACQUIRE, REPORT, MIGRATE, NEWSADINFO, MAPPING with
    plausible contents (the SA and policy the seed script adds)."""
    from netlink_codec import xfrm as X
    from netlink_codec.netlink import encode_msg, nla
    M, A = X.XfrmMsg, X.Xfrma

    def addr(a: str) -> bytes:
        return ipaddress.ip_address(a).packed.ljust(16, b"\0")

    sa_id = struct.pack("=16s4sHBx", addr("192.0.2.2"), struct.pack(">I", 0x100), 2, 50)
    ae = sa_id + addr("192.0.2.1") + struct.pack("=II", 3, 1)
    sel = struct.pack("=16s16sHHHHHBBB3xiI", addr("10.1.0.0"), addr("10.0.0.0"), 0, 0, 0, 0, 2,
                      24, 24, 0, 0, 0)
    lft = struct.pack("=8Q", *([2 ** 64 - 1] * 4 + [0] * 4))
    sa = (sel + addr("192.0.2.2") + struct.pack(">I", 0x100) + bytes([50, 0, 0, 0]) + addr("192.0.2.1")
          + lft + bytes(32) + bytes(12) + struct.pack("=IIHBBB7x", 0, 1, 2, 1, 32, 0))
    pol = sel + lft + bytes(32) + struct.pack("=IIBBBB4x", 10, 0, 1, 0, 0, 0)
    tmpl = (addr("192.0.2.2") + struct.pack(">I", 0) + bytes([50, 0, 0, 0]) + struct.pack("=H2x", 2)
            + addr("192.0.2.1") + struct.pack("=IBBBxIII", 1, 1, 0, 0, ~0 & 0xFFFFFFFF, ~0 & 0xFFFFFFFF,
                                            ~0 & 0xFFFFFFFF))
    replay = struct.pack("=III", 0, 0, 0)
    lifetime = struct.pack("=4Q", 0, 0, 0, 0)
    mig = (addr("192.0.2.2") + addr("192.0.2.1") + addr("192.0.2.12") + addr("192.0.2.11")
           + struct.pack("=BBHIHH", 50, 1, 0, 1, 2, 2))
    kmaddr = addr("192.0.2.1") + addr("192.0.2.2") + struct.pack("=IH2x", 0, 2)
    pol_id = sel + struct.pack("=IB3x", 0, 1)
    mapping = sa_id + struct.pack("=I", 1) + addr("192.0.2.1") + addr("192.0.2.21") + struct.pack(">HH", 4500, 4501)
    acquire = (addr("192.0.2.2") + struct.pack(">I", 0) + bytes([50, 0, 0, 0]) + addr("192.0.2.1") + sel
               + pol + struct.pack("=IIII", 0, 0, 0, 7))
    rq = F_REQUEST | F_ACK
    msgs = [
        (M.NEWAE, ae + nla(A.REPLAY_VAL, replay) + nla(A.LTIME_VAL, lifetime)
         + nla(A.REPLAY_THRESH, struct.pack("=I", 9)) + nla(A.ETIMER_THRESH, struct.pack("=I", 10)),
         rq | 0x100),
        (M.GETAE, ae, F_REQUEST),
        (M.EXPIRE, sa + b"\1" + bytes(7), rq),
        (M.POLEXPIRE, pol + b"\0" + bytes(7) + nla(A.TMPL, tmpl), rq),
        (M.ACQUIRE, acquire + nla(A.TMPL, tmpl), rq),
        (M.REPORT, bytes([50, 0, 0, 0]) + sel, rq),
        (M.MIGRATE, pol_id + nla(A.MIGRATE, mig) + nla(A.KMADDRESS, kmaddr), rq),
        (M.NEWSADINFO, struct.pack("=I", 0) + nla(1, struct.pack("=I", 8)), rq),
        (M.GETSADINFO, struct.pack("=I", 0xFFFFFFFF), F_REQUEST),
        (M.MAPPING, mapping, rq),
        (M.GETSPDINFO, struct.pack("=I", 0xFFFFFFFF), F_REQUEST),
        (M.NEWSPDINFO, struct.pack("=I", 0) + nla(3 | NLA_F_NESTED, nla(1, b"\x18\x10\0\0")), rq),
    ]
    return [encode_msg(t, fl, 1, 0, p) for t, p, fl in msgs]


def record_seeds() -> int:
    """Run soak_seeds.sh under ``xfrmd run --trace`` and keep up to 8 distinct requests of
    each (protocol, message type, genetlink command)."""
    with tempfile.TemporaryDirectory() as d:
        trace = os.path.join(d, "trace.jsonl")
        env = dict(os.environ, PYTHONPATH=ROOT)
        subprocess.run([sys.executable, "-c", "import sys; from xfrmd.cli import main; sys.exit(main())",
                        "run", "--trace", trace, "--", "sh", SEED_SCRIPT], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        kept: dict[tuple, list[bytes]] = {}
        with open(trace) as f:
            for line in f:
                r = json.loads(line)
                d_ = bytes.fromhex(r["data"])
                if r["dir"] != "tx" or len(d_) < 16 or d_[:4] == b"\0\0\0\0":
                    continue
                _, t, flags, _, _ = HDR.unpack_from(d_)
                if not flags & F_REQUEST:
                    continue
                key = (r["proto"], t, d_[16] if r["proto"] == NETLINK_GENERIC and len(d_) > 16 else 0)
                lst = kept.setdefault(key, [])
                if d_ not in lst and len(lst) < 8:
                    lst.append(d_)
    with open(SEEDS, "w") as out:
        for (proto, _, _), lst in sorted(kept.items()):
            for d_ in lst:
                out.write(json.dumps({"proto": proto, "data": d_.hex()}) + "\n")
    print(f"{sum(map(len, kept.values()))} seeds of {len(kept)} message kinds in {SEEDS}")
    return 0


# -- the mutator ---------------------------------------------------------------------------

def _attr_spans(buf: bytes, start: int) -> list[tuple[int, int]]:
    """(offset, aligned length) of each well-formed attribute from ``start``."""
    out, o = [], start
    while o + 4 <= len(buf):
        ln = struct.unpack_from("=H", buf, o)[0]
        if ln < 4 or o + ln > len(buf):
            break
        out.append((o, (ln + 3) & ~3))
        o += (ln + 3) & ~3
    return out


def _attr_tree(buf: bytes, start: int, end: int, parents: tuple = (), depth: int = 0) -> list:
    """Every attribute from ``start`` to ``end``, nested ones too (a payload that parses as
    attributes exactly is taken for a nest): (offset, nla_len, offsets of the enclosing ones)."""
    out, o = [], start
    while o + 4 <= end:
        ln = struct.unpack_from("=H", buf, o)[0]
        if ln < 4 or o + ln > end:
            break
        out.append((o, ln, parents))
        if depth < 4 and ln >= 8:
            inner = _attr_spans(buf[:o + ln], o + 4)
            if inner and inner[-1][0] + inner[-1][1] >= o + ln:
                out += _attr_tree(buf, o + 4, o + ln, parents + (o,), depth + 1)
        o += (ln + 3) & ~3
    return out


def _resize(b: bytearray, at: int, ln: int, parents: tuple, new_payload: bytes) -> None:
    """Replace the payload of the attribute at ``at`` and fix the length of every enclosing
    attribute, so that only that one attribute is malformed."""
    old_size = min((ln + 3) & ~3, len(b) - at)     # the last attribute may lack its padding
    new_ln = 4 + len(new_payload)
    blob = struct.pack("=H", new_ln) + bytes(b[at + 2:at + 4]) + new_payload + bytes(-new_ln % 4)
    b[at:at + old_size] = blob
    delta = len(blob) - old_size
    for p in parents:
        pl = struct.unpack_from("=H", b, p)[0]
        struct.pack_into("=H", b, p, max(4, min(0xFFFF, pl + delta)))


def _attrs_start(buf: bytes, proto: int) -> int:
    """Where a seed's attributes begin: the first offset after the header from which the
    rest parses as attributes (the fixed part's size is not needed)."""
    for o in range(16, len(buf), 4):
        spans = _attr_spans(buf, o)
        if spans and spans[-1][0] + spans[-1][1] >= len(buf):
            return o
    return len(buf)


class Mutator:
    def __init__(self, seeds: dict[int, list[bytes]], rnd: random.Random):
        self.seeds = seeds
        self.r = rnd
        self.starts = {p: [_attrs_start(s, p) for s in lst] for p, lst in seeds.items()}
        self.attrs = {p: [s[o:o + n] for s, st in zip(lst, self.starts[p]) for o, n in _attr_spans(s, st)]
                      for p, lst in seeds.items()}
        self.types = {p: sorted({HDR.unpack_from(s)[1] for s in lst}) for p, lst in seeds.items()}

    def body(self, proto: int) -> tuple[int, int, bytearray]:
        """(type, flags, payload) of one mutated request of ``proto``."""
        r = self.r
        i = r.randrange(len(self.seeds[proto]))
        seed = self.seeds[proto][i]
        start = self.starts[proto][i] - 16
        _, t, flags, _, _ = HDR.unpack_from(seed)
        b = bytearray(seed[16:])
        for _ in range(r.choice((1, 1, 1, 2, 2, 3, 5))):
            op = r.randrange(15)
            if op >= 12:                                        # inside a nest, lengths fixed up
                tree = _attr_tree(bytes(b), max(0, start), len(b))
                if not tree:
                    continue
                at, ln, parents = r.choice(tree)
                payload = bytes(b[at + 4:at + ln])
                if op == 12 and payload:                        # shorter payload
                    payload = payload[:r.randrange(len(payload))]
                elif op == 13:                                  # longer payload
                    payload += bytes(r.randrange(256) for _ in range(r.choice((1, 2, 4, 8))))
                else:                                           # a stray attribute inside it
                    data = bytes(r.randrange(256) for _ in range(r.choice((0, 1, 2, 4, 8))))
                    payload += struct.pack("=HH", 4 + len(data), r.randrange(0, 48)) + data + bytes(-len(data) % 4)
                _resize(b, at, ln, parents, payload)
                continue
            if op == 0 and b:                                   # bit flip
                j = r.randrange(len(b))
                b[j] ^= 1 << r.randrange(8)
            elif op == 1 and b:                                 # byte overwrite
                b[r.randrange(len(b))] = r.choice((0, 0xFF, 0x7F, 0x80, r.randrange(256)))
            elif op == 2 and b:                                 # truncation
                del b[r.randrange(len(b) + 1):]
            elif op == 3:                                       # attribute length lie
                spans = _attr_spans(bytes(b), max(0, start))
                if spans:
                    o, _ = r.choice(spans)
                    struct.pack_into("=H", b, o, r.choice((0, 1, 3, 4, 5, 7, 8, 0xFFFF, r.randrange(0x10000))))
            elif op == 4:                                       # splice another seed's attribute
                pool = self.attrs[proto]
                if pool:
                    a = r.choice(pool)
                    at = r.choice([o for o, _ in _attr_spans(bytes(b), max(0, start))] + [len(b)])
                    b[at:at] = a
            elif op == 5:                                       # nested garbage
                inner = bytes(r.randrange(256) for _ in range(r.randrange(0, 24)))
                sub = struct.pack("=HH", 4 + len(inner), r.randrange(1, 40)) + inner
                a = struct.pack("=HH", 4 + len(sub), r.randrange(1, 64) | NLA_F_NESTED) + sub
                b += a + bytes(-len(a) % 4)
            elif op == 6:                                       # duplicate an attribute
                spans = _attr_spans(bytes(b), max(0, start))
                if spans:
                    o, n = r.choice(spans)
                    b += b[o:o + n]
            elif op == 7:                                       # another type of the protocol
                t = r.choice(self.types[proto])
            elif op == 8:                                       # flags
                flags ^= r.choice((F_DUMP, 0x100, 0x200, 0x400, 0x800, 0x20, 0x10))
            elif op == 9:                                       # random attribute
                data = bytes(r.randrange(256) for _ in range(r.choice((0, 1, 2, 4, 8, 16, 20))))
                a = struct.pack("=HH", 4 + len(data), r.randrange(0, 80)) + data
                b += a + bytes(-len(a) % 4)
            elif op == 10 and len(b) >= 4:                      # extreme integers
                j = r.randrange(0, len(b) - 3) & ~3
                struct.pack_into("=I", b, j, r.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 129, 33, 255)))
            elif op == 11:                                      # junk tail
                b += bytes(r.randrange(256) for _ in range(r.randrange(1, 9)))
        return t, flags, b

    def header_lie(self, proto: int, seq: int, pid: int = 0) -> bytes:
        """A datagram whose header does not match its length, or several messages in one."""
        r = self.r
        t, flags, b = self.body(proto)
        d = bytearray(HDR.pack(16 + len(b), t, flags | F_REQUEST, seq, pid) + b)
        kind = r.randrange(3)
        if kind == 0:
            struct.pack_into("=I", d, 0, r.choice((0, 1, 15, 16, len(d) - 1, len(d) + 1, len(d) + 4096,
                                                   0xFFFFFFFF)))
        elif kind == 1:
            t2, f2, b2 = self.body(proto)
            d += bytes(-len(d) % 4) + HDR.pack(16 + len(b2), t2, f2 | F_REQUEST | F_ACK, seq, pid) + b2
        else:
            del d[r.randrange(4, 16):]
        if d[:4] == b"\0\0\0\0":
            d[0] = 1              # not a control frame
        return bytes(d)


# -- one fuzzing client --------------------------------------------------------------------

class Findings:
    def __init__(self):
        self.sent = self.answered = self.lies = 0
        self.errors: dict[int, int] = {}
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


def _messages(d: bytes):
    o = 0
    while o + 16 <= len(d):
        ln, t, fl, seq, pid = HDR.unpack_from(d, o)
        if ln < 16 or o + ln > len(d):
            yield None
            return
        yield ln, t, fl, seq, pid, d[o + 16:o + ln]
        o += (ln + 3) & ~3


def _walked_seqs(d: bytes) -> set[int]:
    """The seq of every message ``netlink_rcv_skb`` walks in ``d`` (a lying length can make
    the rest of a datagram a message of its own, with whatever seq its bytes say)."""
    out, off = set(), 0
    while len(d) - off >= 16:
        ln, _, _, seq, _ = HDR.unpack_from(d, off)
        if ln < 16 or ln > len(d) - off:
            break
        out.add(seq)
        off += min((ln + 3) & ~3, len(d) - off)
    return out


def _fuzz_client(path: str, netns: str, n: int, seed: int, out) -> None:
    sys.path.insert(0, ROOT)
    from xfrmd.client import NetlinkSocket
    rnd = random.Random(seed)
    mut = Mutator(load_seeds(), rnd)
    f = Findings()
    socks: dict[int, NetlinkSocket] = {}
    seq = seed * 10_000_000
    finished: set[int] = set()      # requests whose one final answer arrived
    kinds: set[tuple] = set()       # (protocol, message type or genetlink family·command) sent
    lies: set[int] = set()          # seqs of datagrams with a lying header (any answers)

    def sock(proto: int) -> NetlinkSocket:
        s = socks.get(proto)
        if s is None:
            s = socks[proto] = NetlinkSocket(proto, netns, path=path, timeout=20.0,
                                             cap_ack=rnd.random() < 0.3)
            if rnd.random() < 0.5:              # as iproute2 does: strict GET/dump checks
                s.setsockopt(270, 12, 1)          # SOL_NETLINK, NETLINK_GET_STRICT_CHK
        return s

    def collect(s: NetlinkSocket, proto: int, want: int, what: str) -> bool:
        """Read until the final answer to ``want``; False if the socket had to be dropped."""
        finals = 0
        while True:
            try:
                d = s.recv()
            except OSError as e:
                f.problem(f"{what}: no final answer ({e!r})")
                s.close()
                socks.pop(proto, None)
                return False
            for m in _messages(d):
                if m is None:
                    f.problem(f"{what}: malformed answer {d[:32].hex()}")
                    continue
                ln, t, fl, mseq, pid, body = m
                if pid != s.portid:
                    f.problem(f"{what}: answer for port {pid}, this socket is {s.portid}")
                if mseq != want:
                    if mseq in lies:
                        continue      # what an earlier lying datagram produced
                    if mseq in finished and t in (NLMSG_ERROR, NLMSG_DONE):
                        f.problem(f"{what}: a second final answer to request {mseq}")
                    elif mseq not in finished:
                        f.problem(f"{what}: an answer to seq {mseq}, never sent on this socket")
                    continue
                if t in (NLMSG_ERROR, NLMSG_DONE):
                    finals += 1
                    if t == NLMSG_ERROR and len(body) >= 4:
                        err = struct.unpack_from("=i", body)[0]
                        f.errors[-err] = f.errors.get(-err, 0) + 1
                        if err == -22 and b"internal error" in body:
                            f.problem(f"{what}: internal error")
            if finals:
                if finals > 1:
                    f.problem(f"{what}: {finals} final answers")
                finished.add(want)
                return True

    protos = (NETLINK_XFRM, NETLINK_ROUTE, NETLINK_GENERIC)
    for i in range(n):
        proto = protos[i % 3] if rnd.random() < 0.9 else rnd.choice(protos)
        seq = (seq + 1) & 0xFFFFFFFF
        s = sock(proto)
        if rnd.random() < 0.05:
            d = mut.header_lie(proto, seq, s.portid)
            lies.update(_walked_seqs(d))     # the kernel answers each message it walks
            s.sock.send(d)
            f.lies += 1
            seq = (seq + 1) & 0xFFFFFFFF
            s.sock.send(HDR.pack(16, NLMSG_NOOP, F_ACK, seq, s.portid))
            what = f"probe after {proto}/{d[:24].hex()}"
        else:
            t, flags, b = mut.body(proto)
            d = HDR.pack(16 + len(b), t, flags | F_REQUEST | F_ACK, seq, s.portid) + bytes(b)
            s.sock.send(d)
            what = f"proto {proto} type {t} flags {flags:#x}: {d[:64].hex()}"
            kinds.add((proto, t if proto != NETLINK_GENERIC or len(b) < 1 else t * 256 + b[0]))
        f.sent += 1
        if collect(s, proto, seq, what):
            f.answered += 1
    for s in socks.values():
        s.close()
    out.put({"sent": f.sent, "answered": f.answered, "lies": f.lies, "errors": f.errors,
             "problems": f.problems, "kinds": sorted(kinds)})


# -- consistency: the dumps say what the successful requests did ---------------------------

def _consistency_client(path: str, netns: str, n: int, seed: int, out) -> None:
    sys.path.insert(0, ROOT)
    from netlink_codec import xfrm as X
    from netlink_codec.netlink import nla
    from xfrmd.client import NetlinkError, NetlinkSocket
    rnd = random.Random(seed)
    M, A = X.XfrmMsg, X.Xfrma
    problems: list[str] = []
    sas: set[tuple] = set()
    pols: set[tuple] = set()
    aead = nla(A.ALG_AEAD, b"rfc4106(gcm(aes))".ljust(64, b"\0") + struct.pack("=II", 160, 128) + bytes(20))
    lft = struct.pack("=8Q", *([2 ** 64 - 1] * 4 + [0] * 4))

    def addr(i: int) -> bytes:
        return bytes([198, 51, 100, i]).ljust(16, b"\0")

    def sel(i: int) -> bytes:
        return struct.pack("=16s16sHHHHHBBB3xiI", bytes([10, 1, i, 0]).ljust(16, b"\0"),
                           bytes([10, 0, i, 0]).ljust(16, b"\0"), 0, 0, 0, 0, 2, 24, 24, 0, 0, 0)

    ok = 0
    with NetlinkSocket(NETLINK_XFRM, netns, path=path, timeout=20.0) as nl:
        for _ in range(n):
            op = rnd.randrange(6)
            d, spi = rnd.randrange(1, 8), rnd.randrange(0x100, 0x110)
            i, dirn = rnd.randrange(1, 8), rnd.randrange(3)
            try:
                if op <= 1:
                    bad = rnd.random() < 0.2
                    info = (bytes(56) + addr(d) + struct.pack(">I", spi) + bytes([50, 0, 0, 0])
                            + bytes([192, 0, 2, 1]).ljust(16, b"\0") + lft + bytes(44)
                            + struct.pack("=IIHBBB7x", 0, 1, 2, 1, 99 if bad else 32, 0))
                    nl.request(M.NEWSA, F_ACK, info + (aead if not bad else aead[:40]))
                    sas.add((d, spi))
                elif op == 2:
                    nl.request(M.DELSA, F_ACK, struct.pack("=16s4sHBx", addr(d), struct.pack(">I", spi), 2, 50))
                    sas.discard((d, spi))
                elif op <= 4:
                    bad = rnd.random() < 0.2
                    pol = sel(i) + lft + bytes(32) + struct.pack("=IIBBBB4x", 5, 0, 7 if bad else dirn, 0, 0, 0)
                    nl.request(M.NEWPOLICY, F_ACK, pol)
                    pols.add((i, dirn))
                else:
                    nl.request(M.DELPOLICY, F_ACK, sel(i) + struct.pack("=IB3x", 0, dirn))
                    pols.discard((i, dirn))
                ok += 1
            except NetlinkError as e:
                if e.extack and "internal error" in e.extack:
                    problems.append(f"consistency op {op}: internal error")
        got_sas = {(bytes(m.fixed.id.daddr)[3], m.fixed.id.spi)
                   for m in nl.request(M.GETSA, F_DUMP) if m.type == M.NEWSA}
        got_pols = {(bytes(m.fixed.sel.daddr)[2], m.fixed.dir)
                    for m in nl.request(M.GETPOLICY, F_DUMP) if m.type == M.NEWPOLICY}
    if got_sas != sas:
        problems.append(f"{netns}: SAD {sorted(got_sas)} but the successful requests imply {sorted(sas)}")
    if got_pols != pols:
        problems.append(f"{netns}: SPD {sorted(got_pols)} but the successful requests imply {sorted(pols)}")
    out.put({"consistency_ok": ok, "sas": len(sas), "policies": len(pols), "problems": problems})


# -- malformed control frames --------------------------------------------------------------

def _bad_frames(path: str, rnd: random.Random) -> int:
    """Truncated frames of every kind, each on a fresh connection: the server must close
    the connection of each malformed one (counted as ``bad_frames`` in its stats) and go on
    serving. Returns how many were sent."""
    sys.path.insert(0, ROOT)
    from xfrmd import transport as T
    n = 0
    for kind in range(0, 20):
        for cut in (0, 1, 3):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(5)
            s.connect(path)
            if kind != T.F_HELLO:
                s.send(T.hello(NETLINK_XFRM, 3, "soak-frames"))
            s.send(T.frame(kind, bytes(rnd.randrange(256) for _ in range(cut))))
            s.close()
            n += 1
    return n


# -- driver --------------------------------------------------------------------------------

def _stats(svc) -> dict:
    return svc.query("stats")


def run(datagrams: int, clients: int, seed: int, consistency_ops: int, rss_bound_mib: float,
        verbose: bool = True) -> dict:
    sys.path.insert(0, ROOT)
    from xfrmd.client import Service
    tmp = tempfile.mkdtemp(prefix="xfrmd-soak-")
    path = os.path.join(tmp, "xfrmd.sock")
    log_path = os.path.join(tmp, "server.log")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    logf = open(log_path, "w")
    server = subprocess.Popen([sys.executable, "-c", "import sys; from xfrmd.cli import main; sys.exit(main())",
                               "serve", "--socket", path, "--quiet"], env=env, stdout=logf, stderr=logf)
    result: dict = {"problems": []}
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        svc = Service("", path)
        names = [f"soak{i}" for i in range(clients)]
        for name in names + ["soak-frames"]:
            svc.query("netns_add", name=name)
        rss0 = _stats(svc)["rss_kib"]
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        per = max(1, datagrams // clients)
        t0 = time.perf_counter()
        procs = [ctx.Process(target=_fuzz_client, args=(path, "default" if i % 2 == 0 else names[i], per,
                                                          seed + i, q)) for i in range(clients)]
        procs += [ctx.Process(target=_consistency_client, args=(path, f"soak-c{i}", consistency_ops,
                                                                 seed + 1000 + i, q)) for i in range(2)]
        for i in range(2):
            svc.query("netns_add", name=f"soak-c{i}")
        for p in procs:
            p.start()
        frames_sent = _bad_frames(path, random.Random(seed))
        outs = [q.get(timeout=max(600, per / 50)) for _ in procs]
        for p in procs:
            p.join(30)
        elapsed = time.perf_counter() - t0
        st = _stats(svc)
        svc.close()
        fuzz = [o for o in outs if "sent" in o]
        sent = sum(o["sent"] for o in fuzz)
        errors: dict = {}
        for o in fuzz:
            for k, v in o["errors"].items():
                errors[int(k)] = errors.get(int(k), 0) + v
        for o in outs:
            result["problems"] += o["problems"]
        if server.poll() is not None:
            result["problems"].append(f"the server exited with {server.returncode}")
        rss1 = st["rss_kib"]
        if (rss1 - rss0) / 1024 > rss_bound_mib:
            result["problems"].append(f"server RSS grew {(rss1 - rss0) / 1024:.0f} MiB (bound {rss_bound_mib})")
        if not st["bad_frames"]:
            result["problems"].append(f"{frames_sent} truncated frames sent, none counted as malformed")
        if st["internal_errors"]:
            result["problems"].append(f"{st['internal_errors']} internal errors: {st['internal_error_sites']}")
        result.update(datagrams=sent, answered=sum(o["answered"] for o in fuzz),
                      header_lies=sum(o["lies"] for o in fuzz), seconds=round(elapsed, 1),
                      message_kinds=len({tuple(k) for o in fuzz for k in o["kinds"]}),
                      per_second=round(sent / elapsed), internal_errors=st["internal_errors"],
                      internal_error_sites=st["internal_error_sites"], bad_frames=st["bad_frames"],
                      rss_start_mib=round(rss0 / 1024, 1), rss_end_mib=round(rss1 / 1024, 1),
                      errnos=dict(sorted(errors.items(), key=lambda kv: -kv[1])),
                      consistency=[{k: o[k] for k in ("consistency_ok", "sas", "policies")}
                                   for o in outs if "consistency_ok" in o])
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        logf.close()
        if result["problems"]:
            result["server_log"] = log_path          # kept for the findings
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(json.dumps(result, indent=2))
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python3 -m benchmarks.soak", description=__doc__.split("\n\n")[1])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the CI size: 50,000 datagrams")
    size.add_argument("--long", action="store_true", help="10^6 datagrams")
    p.add_argument("--datagrams", type=int)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--record-seeds", action="store_true", help="record soak_seeds.jsonl again")
    a = p.parse_args(argv)
    if a.record_seeds:
        return record_seeds()
    n = a.datagrams or (1_000_000 if a.long else 50_000 if a.quick else 100_000)
    res = run(n, a.clients, a.seed, consistency_ops=2000 if a.quick else 20_000,
              rss_bound_mib=64 if n <= 100_000 else 256)
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
