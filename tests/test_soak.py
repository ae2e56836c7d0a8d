"""The soak and fuzz harness's short run (benchmarks/soak.py, `python3 -m benchmarks.soak
--quick`): mutated datagrams of every message type from concurrent clients through a real
`xfrmd serve`, every request answered exactly once on its own socket, the SAD and SPD equal to
what the successful requests imply, no internal error, bounded RSS. About 10 s on a loaded 2-CPU VM."""
from __future__ import annotations

import pytest

from benchmarks import soak


@pytest.mark.slow
def test_quick_soak_finds_nothing():
    res = soak.run(datagrams=50_000, clients=4, seed=7, consistency_ops=1500, rss_bound_mib=64,
                   verbose=False)
    assert res["problems"] == []
    assert res["datagrams"] == res["answered"] == 50_000
    assert res["internal_errors"] == 0 and res["bad_frames"] > 0
    assert res["message_kinds"] >= 100           # every XFRM, rtnetlink and genetlink kind seeded
    assert all(c["consistency_ok"] > 0 for c in res["consistency"])
