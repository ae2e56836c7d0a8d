"""The output path's batch (xfrmd.datapath.output._software_batch: the packets after the
first of a UDP flow through one software GCM state, counted together) against the
packet-by-packet loop it replaces: the same result, the same bytes on the wire, the same
state counters, EXPIRE messages and MIB counters, around every limit the batch must stop at."""
from __future__ import annotations

import pytest

from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.datapath import output, packet
from xfrmd.datapath.mib import xfrm_mib
from xfrmd.kernel import Kernel
from xfrmd.topology import load_topology

from .datapath_helpers import TRANSPORT, TUNNEL, Nl, lifetime, policy, sa, state
from .sad_helpers import messages

L, R = "198.51.100.1", "198.51.100.2"
OUT, G = X.XFRM_POLICY_OUT, X.XfrmNlGrp

CASES = {
    "tunnel": dict(),
    "transport": dict(mode=TRANSPORT),
    "soft_then_hard_packets": dict(lft=lifetime(soft_packets=7, hard_packets=13)),
    "soft_then_hard_bytes": dict(lft=lifetime(soft_bytes=1000, hard_bytes=2000)),
    "transport_bytes": dict(mode=TRANSPORT, lft=lifetime(soft_bytes=1000, hard_bytes=1500)),
    "bitmap_oseq_near_wrap": dict(esn=(0, 0xFFFFFFF0, 0, 0, 0)),
    "legacy_oseq_may_wrap": dict(esn=(0, 0xFFFFFFF8, 0, 0, 0),
                                 extra_flags=X.XFRM_SA_XFLAG_OSEQ_MAY_WRAP),
}


def _run(monkeypatch, batched: bool, case: dict, count: int, size: int):
    # deterministic IV salt and IP IDs, so both runs can be compared byte for byte
    monkeypatch.setattr("xfrmd.datapath.esp.os.urandom", lambda n: bytes(range(n)))
    monkeypatch.setattr(packet, "_ip_id", [0])
    if not batched:
        monkeypatch.setattr(output, "_software_batch", lambda *a, **kw: 0)
    k = Kernel(ManualClock(), topology=load_topology("default"))
    nl, mon = Nl(k), Nl(k, groups=(G.EXPIRE,), pid=77)
    nl.ok(sa(L, R, 0x1000, **case))
    mode = case.get("mode", TUNNEL)
    nl.ok(policy(L, R, OUT, [(L, R, 1, mode)]))
    ns = k.netns("default")
    results = [output.xfrm_xmit(ns, L, R, 17, 1000, 2000, size, count, keep_packets=True)
               for _ in range(2)]
    x = state(k, 0x1000)
    counters = None if x is None else (x.curlft.bytes, x.curlft.packets, x.curlft.use_time,
                                       x.lastused, output.oseq_of(x), x.km_state, x.km_dying)
    expires = [m[4] for d in mon.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.EXPIRE]
    return ([(r.to_dict(), r.packets) for r in results], counters, expires,
            dict(xfrm_mib(ns)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_is_the_per_packet_loop(monkeypatch, name):
    with monkeypatch.context() as m:
        per_packet = _run(m, False, CASES[name], 12, 100)
    with monkeypatch.context() as m:
        batched = _run(m, True, CASES[name], 12, 100)
    assert batched == per_packet
    sent = sum(r[0]["sent"] for r in batched[0])
    assert sent > 2          # the batch had packets to take


def test_batch_takes_the_packets_after_the_first(monkeypatch):
    calls = []
    real = output._software_batch
    monkeypatch.setattr(output, "_software_batch", lambda *a: calls.append(a[-2]) or real(*a))
    k = Kernel(ManualClock(), topology=load_topology("default"))
    nl = Nl(k)
    nl.ok(sa(L, R, 0x1000))
    nl.ok(policy(L, R, OUT, [(L, R, 1, TUNNEL)]))
    res = output.xfrm_xmit(k.netns("default"), L, R, 17, 1, 2, 100, 50)
    assert calls == [49] and res.sent == 50
    assert res.to_dict()["batches"][0]["seq"] == {"0x00001000": [1, 50]}
