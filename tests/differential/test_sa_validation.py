"""Differential: the same SA request bytes to a fresh real-kernel netns and to xfrmd; the
replies must be byte-identical once port ids (and SA add times) are normalised.

The emulated kernel is built like the running one (tests/differential/kconfig_host.py: its
xfrm types, crypto algorithms and XFRM_OFFLOAD), so every request is compared whatever the
machine has: on a kernel without the ESP/AH/IPComp types every SA it would accept fails at the
type lookup ("Requested type not found") in both. Accepted SAs are checked against source
facts in tests/test_sad.py as well.

This file carries a minimal harness of its own (a raw NETLINK_XFRM socket opened inside a
throw-away namespace with setns); tests/differential/harness.py, when it lands, is the shared
one.
"""
from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.conftest import closing_fixture
from tests.differential.kconfig_host import emulated_kernel, netlink_socket_in
from tests.sad_helpers import (CBC, REQ_ACK, A, M, Nl, addr, algo, algo2, msg, selector, usersa_id,
                               usersa_info)
from xfrmd.xfrm.sadb import sad

pytestmark = pytest.mark.netns


def _can_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


class RealXfrm:
    """A raw NETLINK_XFRM socket in a fresh network namespace of the running kernel."""

    def __init__(self):
        self.name = "xfrmd-sad-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.sock = self.open()

    def open(self, groups: int = 0) -> socket.socket:
        """A bound NETLINK_XFRM socket (EXT_ACK on) in this namespace."""
        sock = netlink_socket_in(self.name, N.NETLINK_XFRM)
        sock.bind((0, groups))
        sock.setsockopt(N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
        return sock

    def send(self, data: bytes) -> list[bytes]:
        self.sock.send(data)
        out = []
        while select.select([self.sock], [], [], 0.2)[0]:
            d = self.sock.recv(65536)
            out.append(d)
            if _final(d):
                break
        return out

    def close(self):
        self.sock.close()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def _final(datagram: bytes) -> bool:
    hs = N.split_messages(datagram)
    return bool(hs) and hs[-1].type in (N.NLMSG_ERROR, N.NLMSG_DONE)


class FakeXfrm:
    """An emulated NETLINK_XFRM socket, the kernel built like the running one."""

    def __init__(self):
        self.nl = Nl(emulated_kernel())

    def send(self, data: bytes) -> list[bytes]:
        return self.nl.send(data)


def normalise(datagrams: list[bytes]) -> list[tuple]:
    """Messages with the header pid zeroed and curlft.add_time of SA / AE messages zeroed
    (the real kernel's wall clock is not the emulated one)."""
    out = []
    for d in datagrams:
        for h in N.split_messages(d):
            raw = bytearray(d[h.offset:h.offset + h.len])
            struct.pack_into("=I", raw, 12, 0)
            if h.type == M.NEWSA and h.len >= 16 + 224:
                struct.pack_into("=Q", raw, 16 + 160 + 16, 0)   # curlft.add_time
            if h.type == M.DELSA and h.len >= 16 + 24 + 4 + 224:     # usersa_id + XFRMA_SA
                struct.pack_into("=Q", raw, 16 + 24 + 4 + 160 + 16, 0)
            if h.type == M.NEWPOLICY and h.len >= 16 + 168:          # policy curlft.add_time
                struct.pack_into("=Q", raw, 16 + 120 + 16, 0)
            if h.type == M.EXPIRE and h.len >= 16 + 232:
                struct.pack_into("=Q", raw, 16 + 160 + 16, 0)
            if h.type == M.ACQUIRE and h.len >= 16 + 280:           # global acquire seq
                struct.pack_into("=I", raw, 16 + 276, 0)
            if h.type == M.NEWAE and h.len >= 16 + 48:
                for ra in N.iter_attrs(raw, 16 + 48, len(raw)):
                    if ra.type == A.LTIME_VAL:
                        struct.pack_into("=Q", raw, ra.start + 16, 0)
            out.append((h.type, bytes(raw)))
    return out


real = closing_fixture(RealXfrm, _can_netns, "needs root and iproute2 for a real-kernel netns")


@pytest.fixture
def pair(real):
    # start each case from an empty SAD on both sides
    flush = msg(M.FLUSHSA, bytes([0]))
    real.send(flush)
    fake = FakeXfrm()
    return real, fake


def compare(pair, *requests: bytes):
    real, fake = pair
    for req in requests:
        got_real, got_fake = normalise(real.send(req)), normalise(fake.send(req))
        assert got_fake == got_real, _explain(got_real, got_fake)


def _explain(real, fake) -> str:
    return f"\nreal: {[(t, r.hex()) for t, r in real]}\nfake: {[(t, r.hex()) for t, r in fake]}"


def sa(*attrs: bytes, t=M.NEWSA, **kw) -> bytes:
    return msg(t, usersa_info(**kw) + b"".join(attrs))


DIR_IN = N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_IN)
DIR_OUT = N.nla_u8(A.SA_DIR, X.XFRM_SA_DIR_OUT)
AUTH = N.nla(A.ALG_AUTH, algo("hmac(sha1)", bytes(20)))
ENC = N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16)))
COMP = N.nla(A.ALG_COMP, algo("deflate", b""))
AEAD_GCM = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 128))
ESN4 = struct.pack("=6I", 4, 0, 0, 0, 0, 64) + bytes(16)
ENCAP = N.nla(A.ENCAP, struct.pack("=HHH2x16s", X.UDP_ENCAP_ESPINUDP, 4500, 4500, bytes(16)))

CASES = {
    "all-zero": msg(M.NEWSA, bytes(224)),
    "short header": msg(M.NEWSA, bytes(100)),
    "bad family": sa(ENC, family=3),
    "sel prefix v4": sa(ENC, sel=selector(plen_s=40)),
    "sel prefix v6": sa(ENC, src="2001:db8::1", dst="2001:db8::2", sel=selector(plen_d=129, family=10)),
    "sel family": sa(ENC, sel=selector(family=1)),
    "ah no auth": sa(proto=X.IPPROTO_AH),
    "ah with crypt": sa(AUTH, ENC, proto=X.IPPROTO_AH),
    "ah with tfcpad": sa(AUTH, N.nla_u32(A.TFCPAD, 1), proto=X.IPPROTO_AH),
    "esp comp": sa(ENC, COMP),
    "esp nothing": sa(),
    "esp aead+auth": sa(AEAD_GCM, AUTH),
    "esp tfcpad transport": sa(ENC, N.nla_u32(A.TFCPAD, 4), mode=0),
    "esp iptfs attrs": sa(ENC, N.nla_u32(A.IPTFS_PKT_SIZE, 1400)),
    "comp missing": sa(proto=X.IPPROTO_COMP),
    "comp with auth": sa(COMP, AUTH, proto=X.IPPROTO_COMP),
    "comp big spi": sa(COMP, proto=X.IPPROTO_COMP, spi=0x12345),
    "routing with alg": sa(ENC, proto=X.IPPROTO_ROUTING, src="2001:db8::1", dst="2001:db8::2"),
    "routing no coaddr": sa(proto=X.IPPROTO_ROUTING, src="2001:db8::1", dst="2001:db8::2"),
    "udp proto": sa(ENC, proto=17),
    "aead short": sa(N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(4), 128, key_bits=160))),
    "auth_trunc short": sa(ENC, N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha1)", bytes(2), 96, key_bits=160))),
    "crypt short": sa(N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(3), key_bits=256))),
    "crypt under policy len": sa(N.nla(A.ALG_CRYPT, b"cbc(aes)")),
    "sec ctx len": sa(ENC, N.nla(A.SEC_CTX, struct.pack("=HHBBH", 30, 8, 1, 1, 4) + b"abcd")),
    "esn missing": sa(ENC, flags=X.XFRM_STATE_ESN),
    "esn bmp too big": sa(ENC, N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 129, 0, 0, 0, 0, 0))),
    "esn short bitmap": sa(ENC, N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 4, 0, 0, 0, 0, 64) + bytes(4))),
    "esn legacy window": sa(ENC, N.nla(A.REPLAY_ESN_VAL, ESN4)),
    "esn out window": sa(ENC, DIR_OUT, N.nla(A.REPLAY_ESN_VAL, ESN4), replay_window=0),
    "esn in oseq": sa(ENC, DIR_IN, N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", 4, 5, 0, 0, 0, 64) + bytes(16)),
                      replay_window=0),
    "mode 3": sa(ENC, mode=3),
    "mode iptfs ah": sa(AUTH, proto=X.IPPROTO_AH, mode=X.XFRM_MODE_IPTFS),
    "mode iptfs no dir": sa(ENC, mode=X.XFRM_MODE_IPTFS),
    "mtimer no encap": sa(ENC, N.nla_u32(A.MTIMER_THRESH, 3)),
    "mtimer out": sa(ENC, ENCAP, DIR_OUT, N.nla_u32(A.MTIMER_THRESH, 3), replay_window=0),
    "out decap_dscp": sa(ENC, DIR_OUT, flags=X.XFRM_STATE_DECAP_DSCP),
    "out wildrecv": sa(ENC, DIR_OUT, flags=X.XFRM_STATE_WILDRECV, replay_window=0),
    "out replay window": sa(ENC, DIR_OUT),
    "out replay seq": sa(ENC, DIR_OUT, N.nla(A.REPLAY_VAL, struct.pack("=III", 0, 3, 0)), replay_window=0),
    "in nopmtudisc": sa(ENC, DIR_IN, flags=X.XFRM_STATE_NOPMTUDISC),
    "in dont_encap_dscp": sa(ENC, DIR_IN, N.nla_u32(A.SA_EXTRA_FLAGS, 1)),
    "in iptfs dont frag": sa(ENC, DIR_IN, N.nla(A.IPTFS_DONT_FRAG), mode=X.XFRM_MODE_IPTFS),
    "pcpu without dir": sa(ENC, N.nla_u32(A.SA_PCPU, 0)),
    "pcpu too big": sa(ENC, DIR_IN, N.nla_u32(A.SA_PCPU, 100)),
    "sa_dir 3": sa(ENC, N.nla_u8(A.SA_DIR, 3)),
    "sa_dir 2 bytes": sa(ENC, N.nla(A.SA_DIR, b"\x01\x00")),
    "if_id short": sa(ENC, N.nla(A.IF_ID, b"\x01\x00")),
    "mark short": sa(ENC, N.nla(A.MARK, b"\x01\x00\x00\x00")),
    "unknown crypt": sa(N.nla(A.ALG_CRYPT, algo("foo", bytes(16)))),
    "unknown auth": sa(ENC, N.nla(A.ALG_AUTH, algo("hmac(foo)", bytes(16)))),
    "unknown auth_trunc": sa(ENC, N.nla(A.ALG_AUTH_TRUNC, algo2("bar", bytes(16), 96))),
    "trunc too long": sa(ENC, N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha1)", bytes(20), 200))),
    "aead bad icv": sa(N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 100))),
    "unknown comp": sa(N.nla(A.ALG_COMP, algo("zstd", b"")), proto=X.IPPROTO_COMP),
    "beet v4 routeopt": sa(ENC, mode=X.XFRM_MODE_ROUTEOPTIMIZATION),
    "transport family change": sa(ENC, mode=0, sel=selector(family=10)),
    "updsa missing sel": sa(ENC, t=M.UPDSA, sel=selector(plen_d=99)),
    "sa_dir on getsa": msg(M.GETSA, usersa_id() + DIR_IN),
    "pcpu on delsa": msg(M.DELSA, usersa_id() + N.nla_u32(A.SA_PCPU, 0)),
}

LOOKUPS = {
    "getsa missing": msg(M.GETSA, usersa_id()),
    "delsa missing": msg(M.DELSA, usersa_id()),
    "getsa routing no srcaddr": msg(M.GETSA, usersa_id(proto=X.IPPROTO_ROUTING)),
    "getsa routing srcaddr": msg(M.GETSA, usersa_id(proto=X.IPPROTO_ROUTING) + N.nla(A.SRCADDR, bytes(16))),
    "getsa short": msg(M.GETSA, bytes(10)),
    "flushsa empty": msg(M.FLUSHSA, bytes([0])),
    "flushsa any": msg(M.FLUSHSA, bytes([255])),
    "newae no attr": msg(M.NEWAE, bytes(48), REQ_ACK | N.NLM_F_REPLACE),
    "newae no replace": msg(M.NEWAE, bytes(48) + N.nla(A.REPLAY_VAL, bytes(12))),
    "newae missing": msg(M.NEWAE, usersa_id() + bytes(24) + N.nla(A.REPLAY_VAL, bytes(12)),
                         REQ_ACK | N.NLM_F_REPLACE),
    "getae missing": msg(M.GETAE, usersa_id() + bytes(24)),
    "expire missing": msg(M.EXPIRE, usersa_info() + bytes(8)),
    "allocspi proto 0": msg(M.ALLOCSPI, usersa_info(proto=0) + struct.pack("=II", 1, 2)),
    "allocspi comp range": msg(M.ALLOCSPI, usersa_info(proto=X.IPPROTO_COMP) + struct.pack("=II", 1, 0x10000)),
    "allocspi pcpu too big": msg(M.ALLOCSPI, usersa_info() + struct.pack("=II", 1, 9)
                                 + N.nla_u32(A.SA_PCPU, 64)),
    "allocspi min>max": msg(M.ALLOCSPI, usersa_info() + struct.pack("=II", 9, 8)),
    "dump bad filter": msg(M.GETSA, N.nla(A.ADDRESS_FILTER, struct.pack("=32sHBB", bytes(32), 2, 200, 0)),
                           N.NLM_F_REQUEST | N.NLM_F_DUMP),
    "dump short filter": msg(M.GETSA, N.nla(A.ADDRESS_FILTER, bytes(20)), N.NLM_F_REQUEST | N.NLM_F_DUMP),
    "dump proto u8 short": msg(M.GETSA, N.nla(A.PROTO, b""), N.NLM_F_REQUEST | N.NLM_F_DUMP),
    "dump sa_dir": msg(M.GETSA, N.nla_u8(A.SA_DIR, 1), N.NLM_F_REQUEST | N.NLM_F_DUMP),
    "dump esp only": msg(M.GETSA, N.nla_u8(A.PROTO, 50), N.NLM_F_REQUEST | N.NLM_F_DUMP),
    "dump root only": msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_ROOT),
    "dump empty": msg(M.GETSA, N.nla(A.ADDRESS_FILTER, bytes(36)), N.NLM_F_REQUEST | N.NLM_F_DUMP),
    "sadinfo empty": msg(M.GETSADINFO, struct.pack("=I", 0xffffffff)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_newsa_rejections_match_kernel(pair, name):
    compare(pair, CASES[name])


@pytest.mark.parametrize("name", list(LOOKUPS))
def test_lookups_and_small_ops_match_kernel(pair, name):
    compare(pair, LOOKUPS[name])


def test_sas_that_pass_every_check_before_the_type_lookup(pair):
    """ESP, AH and IPComp SAs of both families that pass every earlier check: accepted, or
    refused at the type lookup, as the running kernel was built."""
    v6 = {"src": "2001:db8::1", "dst": "2001:db8::2"}
    compare(pair, sa(CBC), sa(AUTH, proto=X.IPPROTO_AH), sa(COMP, proto=X.IPPROTO_COMP, mode=0),
            sa(CBC, **v6), sa(AUTH, proto=X.IPPROTO_AH, **v6),
            sa(COMP, proto=X.IPPROTO_COMP, mode=0, **v6),
            msg(M.GETSA, N.nla(A.ADDRESS_FILTER, bytes(36)), N.NLM_F_REQUEST | N.NLM_F_DUMP))


def allocspi(lo, hi, attrs=b"", **kw):
    return msg(M.ALLOCSPI, usersa_info(spi=0, **kw) + struct.pack("=II", lo, hi) + attrs,
               N.NLM_F_REQUEST | N.NLM_F_ACK)


def test_allocspi_larval_state_matches_kernel(pair):
    """ALLOCSPI needs no xfrm type: the larval state, its GETSA and dump must be identical."""
    mark = N.nla(A.MARK, struct.pack("=II", 7, 0xff))
    compare(pair,
            allocspi(0x200, 0x200, reqid=9),
            allocspi(0x200, 0x200, reqid=10),                       # SPI taken
            allocspi(0x300, 0x300, mark + N.nla_u32(A.IF_ID, 3) + DIR_IN, reqid=11,
                     src="2001:db8::1", dst="2001:db8::2"),
            allocspi(0x400, 0x400, N.nla_u32(A.SA_PCPU, 1) + DIR_OUT, reqid=12),
            allocspi(0x10, 0x10, reqid=13, proto=X.IPPROTO_COMP),
            msg(M.GETSA, usersa_id(spi=0x200)),
            msg(M.GETSA, N.nla(A.ADDRESS_FILTER, bytes(36)), N.NLM_F_REQUEST | N.NLM_F_DUMP),
            msg(M.GETAE, usersa_id(spi=0x200) + bytes(16) + struct.pack("=II", 1 | 8, 0), seq=4),
            msg(M.NEWAE, usersa_id(spi=0x200) + bytes(24) + N.nla(A.REPLAY_VAL, bytes(12)),
                REQ_ACK | N.NLM_F_REPLACE),
            msg(M.EXPIRE, usersa_info(spi=0x200) + bytes(8)),
            msg(M.GETSADINFO, struct.pack("=I", 0)),
            msg(M.DELSA, usersa_id(spi=0x200)),
            msg(M.GETSA, usersa_id(spi=0x200)),
            msg(M.FLUSHSA, bytes([X.IPPROTO_ESP])))


def test_sad_hash_growth_reported_like_kernel(pair):
    """GETSADINFO's bucket count after 1..40 larval states (xfrm_hash_grow_check). The kernel
    resizes from a workqueue, so give it a moment before asking."""
    real, fake = pair
    info = msg(M.GETSADINFO, struct.pack("=I", 0))
    for n in range(1, 41):
        compare(pair, allocspi(0x1000 + n, 0x1000 + n, reqid=n))
        if n in (8, 9, 16, 17, 32, 33, 40):
            want = normalise(fake.send(info))
            deadline = time.monotonic() + 2
            while normalise(real.send(info)) != want and time.monotonic() < deadline:
                time.sleep(0.02)      # the kernel resizes from a workqueue
            assert normalise(real.send(info)) == want


def _drain(sock, timeout: float = 0.0) -> list[bytes]:
    """What the socket holds now: the kernel queues multicasts before it answers sendmsg."""
    out = []
    while select.select([sock], [], [], timeout)[0]:
        out.append(sock.recv(65536))
    return out


def test_sa_events_match_kernel(real):
    """DELSA and FLUSHSA notifications of larval states, seen by a listener on the SA and
    EXPIRE groups (legacy bind mask), byte-equal with header pid and add_time normalised."""
    groups = X.XFRMGRP_SA | X.XFRMGRP_EXPIRE
    real.send(msg(M.FLUSHSA, bytes([0])))
    mon_real = real.open(groups)
    k = emulated_kernel()
    fake = Nl(k)
    mon_fake = Nl(k, ext_ack=True, pid=999)
    k.bind(mon_fake.s, 0, groups)
    mark = N.nla(A.MARK, struct.pack("=II", 3, 0xf))
    steps = [allocspi(0x700, 0x700, reqid=1), allocspi(0x701, 0x701, mark + DIR_IN, reqid=2),
             msg(M.DELSA, usersa_id(spi=0x700), seq=77, pid=4321),
             msg(M.DELSA, usersa_id(spi=0x701) + mark, seq=78),
             msg(M.EXPIRE, usersa_info(spi=0x701) + bytes(8)),
             allocspi(0x702, 0x702, reqid=3, proto=X.IPPROTO_AH),
             msg(M.FLUSHSA, bytes([X.IPPROTO_ESP]), seq=79, pid=5),
             msg(M.FLUSHSA, bytes([X.IPPROTO_AH]), seq=80, pid=6)]
    try:
        for req in steps:
            assert normalise(fake.send(req)) == normalise(real.send(req))
            got_real, got_fake = normalise(_drain(mon_real)), normalise(mon_fake.recv_all())
            assert got_fake == got_real, _explain(got_real, got_fake)
    finally:
        mon_real.close()


@pytest.mark.slow
def test_larval_expiry_event_matches_kernel(real):
    """A larval state's hard expiry (acq_expires set to 1 s in both kernels): same EXPIRE."""
    subprocess.run(["ip", "netns", "exec", real.name, "sysctl", "-qw",
                    "net.core.xfrm_acq_expires=1"], check=True)
    mon_real = real.open(X.XFRMGRP_EXPIRE)
    k = emulated_kernel()
    fake = Nl(k)
    mon_fake = Nl(k, pid=999)
    k.bind(mon_fake.s, 0, X.XFRMGRP_EXPIRE)
    sad(fake.s.netns.xfrm).acq_expires = 1
    req = allocspi(0x900, 0x900, N.nla(A.MARK, struct.pack("=II", 1, 1)) + DIR_IN, reqid=4)
    try:
        assert normalise(fake.send(req)) == normalise(real.send(req))
        k.advance(0.9)
        assert mon_fake.recv_all() == []
        k.advance(0.1)
        deadline = time.monotonic() + 5
        got_real = []
        while not got_real and time.monotonic() < deadline:
            got_real = _drain(mon_real, 0.05)
        assert normalise(mon_fake.recv_all()) == normalise(got_real)
    finally:
        mon_real.close()
        subprocess.run(["ip", "netns", "exec", real.name, "sysctl", "-qw",
                        "net.core.xfrm_acq_expires=30"], check=True)


# -- property: any NEWSA gets the kernel's answer ------------------------------------------------

def _newsa_strategy():
    from hypothesis import strategies as st
    names = st.sampled_from(["cbc(aes)", "aes", "hmac(sha1)", "sha1", "hmac(sha256)", "md5",
                             "digest_null", "cipher_null", "rfc3686(ctr(aes))", "deflate",
                             "rfc4106(gcm(aes))", "cbc(des3_ede)", "lzs", "nope", ""])
    key = st.binary(max_size=40)
    u32 = st.sampled_from([0, 1, 2, 3, 96, 128, 200, 0xFFFFFFFF])

    def alg(t, second):
        def build(n, k, bits, extra):
            bits = len(k) * 8 if bits is None else bits
            head = n.encode().ljust(64, b"\0") + struct.pack("=I", bits)
            return N.nla(t, head + (struct.pack("=I", extra) if second else b"") + k)
        return st.builds(build, names, key, st.one_of(st.none(), st.sampled_from([0, 64, 160, 999])), u32)

    esn = st.builds(lambda n, fields, pad: N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", n, *fields) + bytes(pad)),
                    st.sampled_from([0, 1, 4, 129]),
                    st.tuples(u32, u32, u32, u32, st.sampled_from([0, 32, 64, 200])),
                    st.sampled_from([0, 4, 16]))
    optional = [
        alg(A.ALG_AEAD, True), alg(A.ALG_AUTH, False), alg(A.ALG_AUTH_TRUNC, True),
        alg(A.ALG_CRYPT, False), alg(A.ALG_COMP, False), esn,
        st.builds(lambda t: N.nla(A.ENCAP, struct.pack("=HHH2x16s", t, 4500, 4500, bytes(16))),
                  st.sampled_from([1, 2, 7, 9])),
        st.builds(lambda v: N.nla_u32(A.TFCPAD, v), u32),
        st.builds(lambda v: N.nla_u8(A.SA_DIR, v), st.sampled_from([1, 2])),
        st.builds(lambda v: N.nla_u32(A.SA_PCPU, v), st.sampled_from([0, 1, 7])),
        st.builds(lambda s_, b: N.nla(A.REPLAY_VAL, struct.pack("=III", 0, s_, b)), u32, u32),
        st.builds(lambda v: N.nla_u32(A.MTIMER_THRESH, v), u32),
        st.builds(lambda v: N.nla_u32(A.SA_EXTRA_FLAGS, v), st.sampled_from([0, 1, 2, 3])),
        st.builds(lambda v: N.nla_u32(A.NAT_KEEPALIVE_INTERVAL, v), u32),
        st.sampled_from([N.nla(A.IPTFS_DONT_FRAG), N.nla_u32(A.IPTFS_DROP_TIME, 5),
                         N.nla_u16(A.IPTFS_REORDER_WINDOW, 3), N.nla_u32(A.IPTFS_PKT_SIZE, 0)]),
        st.just(N.nla(A.COADDR, bytes(16))),
        st.builds(lambda ln, cl: N.nla(A.SEC_CTX, struct.pack("=HHBBH", ln, 8, 1, 1, cl) + b"ctx!"),
                  st.sampled_from([8, 12, 40]), st.sampled_from([0, 4])),
        st.builds(lambda v, m: N.nla(A.MARK, struct.pack("=II", v, m)), u32, u32),
        st.builds(lambda v: N.nla_u32(A.IF_ID, v), u32),
        st.builds(lambda v: N.nla(A.LTIME_VAL, struct.pack("=4Q", v, v, 0, 0)), u32),
    ]
    good = st.sampled_from([
        N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16))) + N.nla(A.ALG_AUTH, algo("sha1", bytes(20))),
        N.nla(A.ALG_CRYPT, algo("aes", bytes(32))) +
        N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128)),
        N.nla(A.ALG_CRYPT, algo("rfc3686(ctr(aes))", bytes(20))),
        N.nla(A.ALG_CRYPT, algo("cipher_null", b"")),
        N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(20), 128)),
        N.nla(A.ALG_AUTH, algo("hmac(sha512)", bytes(64))),
        N.nla(A.ALG_COMP, algo("deflate", b"")),
        b""])
    attrs = st.tuples(good, st.lists(st.one_of(*optional), max_size=5))
    sel = st.builds(lambda f, d, s_: selector(plen_d=d, plen_s=s_, family=f),
                    st.sampled_from([0, 0, 0, 0, 2, 10, 7]),
                    st.sampled_from([0, 0, 0, 24, 32, 33, 128, 129]),
                    st.sampled_from([0, 0, 32, 64]))
    info = st.builds(
        lambda fam, proto, mode, flags, rw, spi, s_: usersa_info(
            family=fam, proto=proto, mode=mode, flags=flags, replay_window=rw, spi=spi, sel=s_),
        st.sampled_from([2, 2, 2, 2, 2, 10, 10, 10, 0, 3]),
        st.sampled_from([X.IPPROTO_ESP] * 8 + [X.IPPROTO_AH] * 3 + [X.IPPROTO_COMP] * 3 +
                        [X.IPPROTO_ROUTING, X.IPPROTO_DSTOPTS, 17, 255]),
        st.sampled_from([0, 1, 1, 1, 2, 3, 4, 5, 6, 7]),
        st.sampled_from([0] * 8 + [1, 2, 4, 8, 16, 32, 64, 128, 0xFF]),
        st.sampled_from([0, 0, 32, 200]), st.sampled_from([0x100, 0x100, 0xFFFF, 0x10000]), sel)
    return st.builds(lambda i, a, t: msg(t, i + a[0] + b"".join(a[1])), info, attrs,
                     st.sampled_from([M.NEWSA, M.NEWSA, M.UPDSA]))


def test_any_newsa_gets_the_kernels_answer(real):
    """Random NEWSA/UPDSA requests: built like the machine's kernel (its xfrm types, its
    crypto algorithms) xfrmd answers every one with the kernel's bytes."""
    from hypothesis import HealthCheck, given, settings

    fake = FakeXfrm()

    @settings(max_examples=600, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_newsa_strategy())
    def check(req):
        got_real, got_fake = normalise(real.send(req)), normalise(fake.send(req))
        assert got_fake == got_real, _explain(got_real, got_fake)

    check()


def _ops_strategy():
    from hypothesis import strategies as st
    spi = st.sampled_from([0x300, 0x301, 0x302])
    proto = st.sampled_from([X.IPPROTO_ESP, X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP])
    dst = st.sampled_from(["198.51.100.1", "198.51.100.2", "2001:db8::2"])
    mark = st.sampled_from([b"", N.nla(A.MARK, struct.pack("=II", 1, 1)),
                            N.nla(A.MARK, struct.pack("=II", 0x11, 0xff))])
    extra = st.sampled_from([b"", DIR_IN, DIR_OUT, N.nla_u32(A.IF_ID, 4)])

    def src_of(d):
        return "2001:db8::1" if ":" in d else "192.0.2.1"

    alloc = st.builds(lambda s_, p, d, m, e, r: allocspi(s_, s_, m + e, reqid=r, proto=p, dst=d, src=src_of(d)),
                      spi, proto, dst, mark, extra, st.sampled_from([1, 2]))
    ident = st.builds(lambda s_, p, d: usersa_id(spi=s_, proto=p, dst=d), spi, proto, dst)
    ops = st.one_of(
        alloc, alloc,
        st.builds(lambda i, m: msg(M.GETSA, i + m, N.NLM_F_REQUEST), ident, mark),
        st.builds(lambda i, m: msg(M.DELSA, i + m, seq=9, pid=33), ident, mark),
        st.builds(lambda p: msg(M.FLUSHSA, bytes([p]), seq=10, pid=44), st.sampled_from([0, 50, 51, 255])),
        st.builds(lambda i, m, fl: msg(M.GETAE, i + bytes(16) + struct.pack("=II", fl, 0) + m),
                  ident, mark, st.sampled_from([0, 1, 8, 9])),
        st.builds(lambda i, m: msg(M.NEWAE, i + bytes(24) + N.nla(A.REPLAY_VAL, bytes(12)) + m,
                                   REQ_ACK | N.NLM_F_REPLACE), ident, mark),
        st.builds(lambda s_, p, d, h: msg(M.EXPIRE, usersa_info(spi=s_, proto=p, dst=d, src=src_of(d))
                                          + bytes([h]) + bytes(7)), spi, proto, dst, st.sampled_from([0, 1])),
        st.builds(lambda f: msg(M.GETSA, f, N.NLM_F_REQUEST | N.NLM_F_DUMP), st.sampled_from([
            b"", N.nla(A.ADDRESS_FILTER, bytes(36)), N.nla_u8(A.PROTO, 51),
            N.nla(A.ADDRESS_FILTER, struct.pack("=16s16sHBB", bytes(16), bytes([198, 51, 100, 2]).ljust(16, b"\0"),
                                                2, 0, 32))])),
        st.just(msg(M.GETSADINFO, struct.pack("=I", 7))),
    )
    return st.lists(ops, min_size=1, max_size=10)


def test_random_sa_operation_sequences_match_kernel(real):
    """Random sequences of ALLOCSPI, GETSA, DELSA, FLUSHSA, GETAE, NEWAE, EXPIRE, dumps and
    SADINFO: the same replies and the same SA/EXPIRE events as the kernel. Both kernels live
    across the examples (flushed in between) so that the SAD hash history matches too."""
    from hypothesis import HealthCheck, given, settings

    groups = X.XFRMGRP_SA | X.XFRMGRP_EXPIRE
    own = RealXfrm()
    mon_real = own.open(groups)
    k = emulated_kernel()
    fake = Nl(k)
    mon_fake = Nl(k, pid=999)
    k.bind(mon_fake.s, 0, groups)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_ops_strategy())
    def check(ops):
        flush = msg(M.FLUSHSA, bytes([0]))
        own.send(flush)
        fake.send(flush)
        _drain(mon_real)
        mon_fake.recv_all()
        for req in ops:
            got_real, got_fake = normalise(own.send(req)), normalise(fake.send(req))
            assert got_fake == got_real, _explain(got_real, got_fake)
            ev_real, ev_fake = normalise(_drain(mon_real)), normalise(mon_fake.recv_all())
            assert ev_fake == ev_real, _explain(ev_real, ev_fake)

    try:
        check()
    finally:
        mon_real.close()
        own.close()


def _tmpl(proto=X.IPPROTO_ESP, family=0, reqid=7, mode=X.XFRM_MODE_TUNNEL, optional=0,
          dst="198.51.100.1", src="192.0.2.1", algs=(0xFF, 0xFFF, 0xFFFF)) -> bytes:
    return struct.pack("=16s4sB3xH2x16sIBBBxIII", addr(dst), bytes(4), proto, family, addr(src),
                       reqid, mode, 0, optional, *algs)


def _user_acquire(*attrs: bytes, sel_family=2, plen=32, pdir=X.XFRM_POLICY_OUT, action=0,
                  share=0, index=0, algs=(1, 2, 3)) -> bytes:
    sel = selector("10.0.0.1", "10.0.1.1", plen, plen, sel_family, 6)
    pol = sel + struct.pack("=8Q4QIIBBBB4x", *([X.XFRM_INF] * 4), 0, 0, 0, 0, 0, 0, 0, 0,
                            5, index, pdir, action, 0, share)
    ua = (struct.pack("=16s4sB3x", addr("198.51.100.1"), bytes(4), 50) + addr("192.0.2.1")
          + sel + pol + struct.pack("=IIII", *algs, 0))
    return msg(M.ACQUIRE, ua + b"".join(attrs))


USER_ACQUIRES = {
    "two templates + mark": _user_acquire(N.nla(A.TMPL, _tmpl() + _tmpl(X.IPPROTO_AH, 2, 8, 0, 1)),
                                          N.nla(A.MARK, struct.pack("=II", 3, 7))),
    "v6 template if_id pcpu": _user_acquire(N.nla(A.TMPL, _tmpl(family=10, dst="2001:db8::2", src="2001:db8::1")),
                                            N.nla_u32(A.IF_ID, 9), N.nla_u32(A.SA_PCPU, 1)),
    "sub policy type": _user_acquire(N.nla(A.TMPL, _tmpl()), N.nla(A.POLICY_TYPE, bytes([1]) + bytes(5))),
    "no templates": _user_acquire(),
    "pcpu too big": _user_acquire(N.nla(A.TMPL, _tmpl()), N.nla_u32(A.SA_PCPU, 9)),
    "bad share": _user_acquire(N.nla(A.TMPL, _tmpl()), share=4),
    "bad action": _user_acquire(action=2),
    "sel family 0": _user_acquire(sel_family=0),
    "sel prefix": _user_acquire(plen=40),
    "bad dir": _user_acquire(pdir=3),
    "index dir": _user_acquire(index=17, pdir=0),
    "bad type": _user_acquire(N.nla(A.POLICY_TYPE, bytes([2]) + bytes(5))),
    "optional tunnel out": _user_acquire(N.nla(A.TMPL, _tmpl(optional=1))),
    "family change transport": _user_acquire(N.nla(A.TMPL, _tmpl(family=10, mode=0))),
    "mode 6": _user_acquire(N.nla(A.TMPL, _tmpl(mode=6))),
    "tmpl family 3": _user_acquire(N.nla(A.TMPL, _tmpl(family=3))),
    "tmpl proto udp": _user_acquire(N.nla(A.TMPL, _tmpl(proto=17))),
    "tmpl any": _user_acquire(N.nla(A.TMPL, _tmpl(proto=255))),
    "7 templates": _user_acquire(N.nla(A.TMPL, _tmpl() * 7)),
    "sec ctx bad": _user_acquire(N.nla(A.SEC_CTX, struct.pack("=HHBBH", 9, 8, 1, 1, 0))),
}


@pytest.mark.parametrize("name", list(USER_ACQUIRES))
def test_user_acquire_matches_kernel(real, name):
    """XFRM_MSG_ACQUIRE from a key manager: the answer and the ACQUIRE events (one per
    template, algorithm masks copied into the templates as km_query goes)."""
    mon_real = real.open(X.XFRMGRP_ACQUIRE)
    k = emulated_kernel()
    fake = Nl(k)
    mon_fake = Nl(k, pid=999)
    k.bind(mon_fake.s, 0, X.XFRMGRP_ACQUIRE)
    req = USER_ACQUIRES[name]
    try:
        assert normalise(fake.send(req)) == normalise(real.send(req))
        got_real, got_fake = normalise(_drain(mon_real)), normalise(mon_fake.recv_all())
        assert got_fake == got_real, _explain(got_real, got_fake)
    finally:
        mon_real.close()


def _mig(od="198.51.100.1", os_="192.0.2.1", nd="198.51.100.9", ns="192.0.2.9", proto=50,
         mode=1, reqid=1, of=2, nf=2) -> bytes:
    return struct.pack("=16s16s16s16sBBHIHH", addr(od), addr(os_), addr(nd), addr(ns), proto,
                       mode, 0, reqid, of, nf)


_PID = selector("10.0.0.0", "10.0.1.0", 24, 24, 2) + struct.pack("=IB3x", 0, 1)
MIGRATES = {
    "no attribute": msg(M.MIGRATE, _PID),
    "seven entries": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig() * 7)),
    "null new address": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig(nd="0.0.0.0"))),
    "duplicate entries": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig() * 2)),
    "no target policy": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig())),
    "bad dir": msg(M.MIGRATE, _PID[:60] + bytes([3]) + bytes(3) + N.nla(A.MIGRATE, _mig())),
    "bad policy type": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig()) + N.nla(A.POLICY_TYPE, bytes([5]) + bytes(5))),
    "short entry": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, bytes(10))),
    "v6 entries": msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig("2001:db8::1", "2001:db8::2", "2001:db8::3",
                                                            "2001:db8::4", of=10, nf=10) + _mig())),
}


@pytest.mark.parametrize("name", list(MIGRATES))
def test_migrate_checks_match_kernel(pair, name):
    compare(pair, MIGRATES[name])


def _policy_msg(tmpls: bytes, sel=None, pdir=X.XFRM_POLICY_OUT, prio=0) -> bytes:
    sel = sel or selector("10.0.0.0", "10.0.1.0", 24, 24, 2)
    info = sel + struct.pack("=8Q4QIIBBBB4x", *([X.XFRM_INF] * 4), 0, 0, 0, 0, 0, 0, 0, 0,
                             prio, 0, pdir, 0, 0, 0)
    return msg(M.NEWPOLICY, info + N.nla(A.TMPL, tmpls))


def test_migrate_of_policy_templates_matches_kernel(pair):
    """A migration with no SA to move (the kernel here has none): the policy's tunnel
    template takes the new endpoints, transport templates stay, a second run finds nothing
    (ENODATA); KMADDRESS/ENCAP attributes and the IPSEC_ULPROTO_ANY selector rule too."""
    real, _ = pair
    real.send(msg(M.FLUSHPOLICY, b""))
    kma = N.nla(A.KMADDRESS, struct.pack("=16s16sIH2x", addr("192.0.2.1"), addr("198.51.100.1"), 0, 2))
    encap = N.nla(A.ENCAP, struct.pack("=HHH2x16s", 2, 4500, 4500, bytes(16)))
    any_sel = bytearray(selector("10.0.0.0", "10.0.1.0", 24, 24, 2, 255))
    try:
        compare(pair,
                _policy_msg(_tmpl(reqid=1, family=2) + _tmpl(X.IPPROTO_AH, 2, 1, 0)),
                _policy_msg(_tmpl(reqid=2, family=2), pdir=X.XFRM_POLICY_IN),
                msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig()) + kma + encap),
                msg(M.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP),
                msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig())),
                msg(M.MIGRATE, _PID + N.nla(A.MIGRATE, _mig(proto=51, mode=0, reqid=0))),
                msg(M.MIGRATE, bytes(any_sel) + struct.pack("=IB3x", 0, 0)
                    + N.nla(A.MIGRATE, _mig(reqid=2))),
                msg(M.GETPOLICY, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
    finally:
        real.send(msg(M.FLUSHPOLICY, b""))
