"""Codec vectors: request bytes captured from the real `ip` 6.1 and the real kernel's replies
(tests/vectors/xfrm.jsonl, regenerate with tools/capture_vectors.py) decode to the expected
fields and re-encode to the same bytes."""
from __future__ import annotations

import json
import pathlib

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from netlink_codec.xfrm import XFRM

VECTORS = [json.loads(line) for line in
           (pathlib.Path(__file__).parent / "vectors" / "xfrm.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("v", VECTORS, ids=[f"{v['kind']}:{v['name'][:50]}" for v in VECTORS])
def test_round_trip(v):
    raw = bytes.fromhex(v["hex"])
    msgs = XFRM.decode_datagram(raw)
    assert msgs
    again = b"".join(XFRM.encode(m) + bytes(-len(XFRM.encode(m)) % 4) for m in msgs)
    assert again[:len(raw)] == raw


def _one(name, kind="request"):
    v = next(v for v in VECTORS if v["name"].startswith(name) and v["kind"] == kind)
    return XFRM.decode_datagram(bytes.fromhex(v["hex"]))


def test_policy_add_fields():
    m = _one("xfrm policy add src 10.0.0.0/24")[0]
    assert m.type == X.XfrmMsg.NEWPOLICY and m.flags == N.NLM_F_REQUEST | N.NLM_F_ACK
    p = m.fixed
    assert (p.sel.family, p.sel.prefixlen_s, p.sel.prefixlen_d, p.dir, p.priority) == (2, 24, 24, 1, 5)
    assert bytes(p.sel.saddr)[:4] == bytes([10, 0, 0, 0])
    (tmpl,) = [a for a in m.attrs if a.type == X.Xfrma.TMPL]
    t = tmpl.value[0]
    assert (t.id.proto, t.mode, t.reqid, bytes(t.saddr)[:4]) == (50, 1, 3, bytes([192, 0, 2, 1]))


def test_state_add_with_offload_fields():
    m = _one("xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000")[0]
    assert m.fixed.id.spi == 0x1000 and m.fixed.id.proto == 50 and m.fixed.lft.soft_byte_limit == X.XFRM_INF
    by = {a.type: a for a in m.attrs}
    assert bytes(by[X.Xfrma.ALG_AEAD].value.alg_name).rstrip(b"\0") == b"rfc4106(gcm(aes))"
    assert by[X.Xfrma.ALG_AEAD].value.alg_icv_len == 128
    assert (by[X.Xfrma.OFFLOAD_DEV].value.ifindex, by[X.Xfrma.OFFLOAD_DEV].value.flags) == (1, 0)


def test_kernel_replies():
    err = _one("xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000", "reply")[0]
    assert err.type == N.NLMSG_ERROR and err.fixed.error < 0
    count = _one("xfrm policy count", "reply")[0]
    assert count.type == X.XfrmMsg.NEWSPDINFO
    larval = _one("xfrm state allocspi", "reply")[0]
    assert larval.type == X.XfrmMsg.NEWSA and larval.fixed.id.spi == 0x200
    assert larval.fixed.lft.hard_add_expires_seconds == 30
