"""Builders for the data path tests: SAs and policies as a key manager sends them, into a
sans-IO kernel with the default topology (or bare namespaces)."""
from __future__ import annotations

import ipaddress
import struct

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from .sad_helpers import A, M, Nl, algo, algo2, msg, selector, usersa_info

INF = X.XFRM_INF
KEY = bytes(range(16)) + b"\xde\xad\xbe\xef"        # AES-128 + salt
GCM = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", KEY, 128))
CBC = (N.nla(A.ALG_CRYPT, algo("cbc(aes)", bytes(16)))
       + N.nla(A.ALG_AUTH_TRUNC, algo2("hmac(sha256)", bytes(32), 128)))
TUNNEL, TRANSPORT = X.XFRM_MODE_TUNNEL, X.XFRM_MODE_TRANSPORT


def a16(a: str) -> bytes:
    return ipaddress.ip_address(a).packed.ljust(16, b"\0")


def fam(a: str) -> int:
    return X.AF_INET6 if ":" in a else X.AF_INET


def sa(src, dst, spi, *, reqid=1, mode=TUNNEL, alg=GCM, replay_window=0, flags=0,
       lft=None, esn=None, offload=None, extra=b"", dir=0, extra_flags=0):
    """NEWSA. ``esn``: (replay_window, oseq, seq, oseq_hi, seq_hi) as XFRMA_REPLAY_ESN_VAL;
    ``offload``: (ifindex, XFRM_OFFLOAD_* flags)."""
    kw = {}
    if lft is not None:
        kw["lft"] = lft
    body = usersa_info(src=src, dst=dst, spi=spi, reqid=reqid, mode=mode,
                       replay_window=replay_window, flags=flags, **kw) + alg
    if esn is not None:
        win, oseq, seq, oseq_hi, seq_hi = esn
        words = max(1, (win + 31) // 32)
        body += N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I", words, oseq, seq, oseq_hi, seq_hi, win)
                      + bytes(4 * words))
    if offload is not None:
        body += N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", *offload))
    if dir:
        body += N.nla(A.SA_DIR, bytes([dir]))
    if extra_flags:
        body += N.nla(A.SA_EXTRA_FLAGS, struct.pack("=I", extra_flags))
    return msg(M.NEWSA, body + extra)


def lifetime(soft_bytes=INF, hard_bytes=INF, soft_packets=INF, hard_packets=INF):
    return (soft_bytes, hard_bytes, soft_packets, hard_packets, 0, 0, 0, 0)


def policy(src, dst, dir, tmpls, *, plen=None, action=0, priority=0, proto=0, offload=None):
    """NEWPOLICY; ``tmpls``: [(tsrc, tdst, reqid, mode)] (None addresses: any)."""
    f = fam(dst)
    plen = plen if plen is not None else (32 if f == X.AF_INET else 128)
    sel = selector(src, dst, plen, plen, f, proto)
    info = sel + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0, 0, 0, 0, 0,
                             priority, 0, dir, action, 0, 0)
    raw = b""
    for tsrc, tdst, reqid, mode in tmpls:
        raw += struct.pack("=16s4sB3xH2x16sIBBBxIII", a16(tdst) if tdst else bytes(16), bytes(4),
                           X.IPPROTO_ESP, f, a16(tsrc) if tsrc else bytes(16), reqid, mode, 0, 0,
                           0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    body = info + (N.nla(A.TMPL, raw) if raw else b"")
    if offload is not None:
        body += N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", *offload))
    return msg(M.NEWPOLICY, body)


def state(k, spi, ns="default"):
    from xfrmd.xfrm.sadb import sad
    for x in sad(k.netns(ns).xfrm).all.values():
        if x.id.spi == spi:
            return x
    return None


__all__ = ["Nl", "sa", "policy", "lifetime", "state", "KEY", "GCM", "CBC", "TUNNEL",
           "TRANSPORT", "INF"]
