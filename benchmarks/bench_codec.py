"""Codec: decode + re-encode (netlink_codec, the XFRM family declared as data) of
(a) a NEWSA with xfrm_usersa_info + XFRMA_ALG_AEAD + XFRMA_OFFLOAD_DEV + XFRMA_SA_DIR and
(b) a NEWPOLICY with one template. Median µs per decode+encode (bar ≤ 10 µs each), and the
ratio to ``struct.unpack`` of the same fixed-size struct measured in the same run."""
from __future__ import annotations

import struct

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from netlink_codec.xfrm import XFRM

from .bench_esp import _best

A = X.Xfrma


def newsa() -> bytes:
    info = X.XfrmUsersaInfo()
    info.family, info.mode, info.id.proto, info.id.spi = X.AF_INET, 1, X.IPPROTO_ESP, 0x1000
    aead = b"rfc4106(gcm(aes))".ljust(64, b"\0") + struct.pack("=II", 160, 128) + bytes(20)
    body = (bytes(info) + N.nla(A.ALG_AEAD, aead)
            + N.nla(A.OFFLOAD_DEV, bytes(X.XfrmUserOffload(ifindex=3, flags=2)))
            + N.nla_u8(A.SA_DIR, 1))
    return N.encode_msg(X.XfrmMsg.NEWSA, N.NLM_F_REQUEST | N.NLM_F_ACK, 1, 0, body)


def newpolicy() -> bytes:
    p = X.XfrmUserpolicyInfo()
    p.sel.family, p.dir = X.AF_INET, 1
    t = X.XfrmUserTmpl()
    t.family, t.id.proto, t.mode = X.AF_INET, X.IPPROTO_ESP, 1
    body = bytes(p) + N.nla(A.TMPL, bytes(t))
    return N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST | N.NLM_F_ACK, 1, 0, body)


_SEL = "16s16sHHHHHBBB3xiI"
# the same structs' fields as plain struct formats (the reference: one unpack of the fixed part)
_LAYOUT = {X.XfrmUsersaInfo: "=" + _SEL + "16s4sB3x16s8Q4Q3IIIHBBB7x",
           X.XfrmUserpolicyInfo: "=" + _SEL + "8Q4QIIBBBB4x"}


def run(quick: bool = False) -> list[dict]:
    n = 2000 if quick else 20000
    rows = []
    for name, msg, fixed in (("newsa_aead_offload_dir", newsa(), X.XfrmUsersaInfo),
                             ("newpolicy_one_tmpl", newpolicy(), X.XfrmUserpolicyInfo)):
        assert XFRM.encode(XFRM.decode(msg)) == msg      # round trip is exact
        layout = struct.Struct(_LAYOUT[fixed])
        ours, ref = _best(lambda: XFRM.encode(XFRM.decode(msg)),
                          lambda: layout.unpack_from(msg, 16), n)
        rows.append({"name": f"codec_{name}_decode_encode", "value": ours * 1e6, "unit": "µs",
                     "reference": ref * 1e6, "ratio": ours / ref,
                     "bar": "<= 10 µs (ratio: times struct.unpack of the fixed struct)",
                     "goal": "<= 10 µs", "gate": "lower"})
    return rows


if __name__ == "__main__":
    import sys
    for row in run(quick="--quick" in sys.argv):
        print(row)
