"""Request builders for SA tests (raw netlink_codec bytes, as a key manager would send)."""
from __future__ import annotations

import ipaddress
import struct

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

A = X.Xfrma
M = X.XfrmMsg
REQ_ACK = N.NLM_F_REQUEST | N.NLM_F_ACK
INF = X.XFRM_INF


def addr(a: str) -> bytes:
    return ipaddress.ip_address(a).packed.ljust(16, b"\0")


def fam(a: str) -> int:
    return X.AF_INET6 if ":" in a else X.AF_INET


def selector(src="0.0.0.0", dst="0.0.0.0", plen_s=0, plen_d=0, family=0, proto=0) -> bytes:
    return struct.pack("=16s16sHHHHHBBB3xiI", addr(dst), addr(src), 0, 0, 0, 0, family,
                       plen_d, plen_s, proto, 0, 0)


def usersa_info(src="192.0.2.1", dst="198.51.100.1", spi=0x1000, proto=X.IPPROTO_ESP,
                family=None, mode=X.XFRM_MODE_TUNNEL, reqid=1, flags=0, replay_window=32,
                sel=None, lft=(INF, INF, INF, INF, 0, 0, 0, 0), seq=0) -> bytes:
    family = family if family is not None else fam(dst)
    sel = sel if sel is not None else selector()
    return struct.pack("=56s16s4sB3x16s8Q4Q3III HBBB7x".replace(" ", ""),
                       sel, addr(dst), struct.pack(">I", spi), proto, addr(src), *lft,
                       0, 0, 0, 0, 0, 0, 0, seq, reqid, family, mode, replay_window, flags)


def usersa_id(dst="198.51.100.1", spi=0x1000, proto=X.IPPROTO_ESP, family=None) -> bytes:
    return struct.pack("=16s4sHBx", addr(dst), struct.pack(">I", spi),
                       family if family is not None else fam(dst), proto)


def algo(name: str, key: bytes, key_bits: int | None = None) -> bytes:
    bits = len(key) * 8 if key_bits is None else key_bits
    return name.encode().ljust(64, b"\0") + struct.pack("=I", bits) + key


def algo2(name: str, key: bytes, second: int, key_bits: int | None = None) -> bytes:
    """xfrm_algo_auth (second = trunc_len) or xfrm_algo_aead (second = icv_len)."""
    bits = len(key) * 8 if key_bits is None else key_bits
    return name.encode().ljust(64, b"\0") + struct.pack("=II", bits, second) + key


GCM_KEY = bytes(range(20))
AEAD = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", GCM_KEY, 128))
CBC = N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16))) + \
    N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128))


def msg(t: int, payload: bytes, flags: int = REQ_ACK, seq: int = 1, pid: int = 0) -> bytes:
    return N.encode_msg(t, flags, seq, pid, payload)


def newsa(*attrs: bytes, t=M.NEWSA, seq=1, pid=0, flags=REQ_ACK, **kw) -> bytes:
    info = usersa_info(**kw)
    return msg(t, info + b"".join(attrs) if attrs else info + AEAD, flags, seq, pid)


class Nl:
    """An emulated NETLINK_XFRM socket driven in-process."""

    def __init__(self, kernel, groups=(), ext_ack=True, pid=4242):
        self.k = kernel
        self.s = kernel.socket(N.NETLINK_XFRM, pid=pid)
        kernel.bind(self.s)
        if ext_ack:
            kernel.setsockopt(self.s, N.SOL_NETLINK, N.NETLINK_EXT_ACK, 1)
        for g in groups:
            kernel.setsockopt(self.s, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, g)

    def send(self, data: bytes) -> list[bytes]:
        self.k.deliver(self.s, data)
        return self.recv_all()

    def recv_all(self) -> list[bytes]:
        out = []
        while True:
            d = self.k.recv(self.s)
            if d is None:
                return out
            out.append(d)

    def errno_of(self, data: bytes) -> tuple[int, str | None]:
        """Send; return (error, extack message) of the NLMSG_ERROR answer."""
        replies = [m for d in self.send(data) for m in messages(d)]
        errs = [m for m in replies if m[0] == N.NLMSG_ERROR]
        assert errs, replies
        return ack_info(errs[-1])

    def ok(self, data: bytes) -> None:
        err, text = self.errno_of(data)
        assert err == 0, (err, text)


def messages(datagram: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(type, flags, seq, pid, whole message bytes) for every message of a datagram."""
    out = []
    for h in N.split_messages(datagram):
        out.append((h.type, h.flags, h.seq, h.pid, bytes(datagram[h.offset:h.offset + h.len])))
    return out


def ack_info(m) -> tuple[int, str | None]:
    t, flags, _seq, _pid, raw = m
    (err,) = struct.unpack_from("=i", raw, 16)
    text = None
    if flags & N.NLM_F_ACK_TLVS:
        off = 20 + (16 if flags & N.NLM_F_CAPPED else (struct.unpack_from("=I", raw, 20)[0]))
        off = N.align(off)
        for ra in N.iter_attrs(raw, off, len(raw)):
            if ra.type == N.NLMSGERR_ATTR_MSG:
                text = raw[ra.start:ra.end].rstrip(b"\0").decode()
    return err, text


def attrs_of(raw: bytes, fixed: int) -> dict[int, bytes]:
    """Attribute payloads by type after the fixed part of a message."""
    return {ra.type: raw[ra.start:ra.end] for ra in N.iter_attrs(raw, 16 + N.align(fixed), len(raw))}


def attr_types(raw: bytes, fixed: int) -> list[int]:
    return [ra.type for ra in N.iter_attrs(raw, 16 + N.align(fixed), len(raw))]
