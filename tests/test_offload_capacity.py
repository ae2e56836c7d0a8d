"""Random add/delete sequences against the hardware tables (hypothesis): netdevsim's 33 slots
per port and the airoha SOE's 32 slots shared by its ports. After every step the errno is
the kernel's (the driver runs in xfrm_state_construct, before xfrm_state_add's duplicate
check) and the hardware tables hold exactly the SAs the SAD holds: nothing half-installed."""
from __future__ import annotations

import errno as E
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netlink_codec import xfrm as X
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.topology import load_topology

from .sad_helpers import M, Nl, msg
from .test_offload import PACKET, SOE_DST, sa, sad, soe

NSIM_DST = "198.51.100.2"
DUP_SOE = (-E.EOPNOTSUPP, "airoha_eth: SOE requires delete-and-add for SA updates")

ops = st.lists(st.tuples(st.sampled_from(["add", "add", "del"]),
                         st.sampled_from(["nsim0", "soe0", "soe2"]), st.integers(0, 39)),
               min_size=20, max_size=120)


def delsa(dst: str, spi: int) -> bytes:
    addr = bytes(int(p) for p in dst.split(".")) + bytes(12)
    return msg(M.DELSA, struct.pack("=16s4sHBx", addr, struct.pack(">I", spi), 2, X.IPPROTO_ESP))


@settings(max_examples=40, deadline=None)
@given(ops)
def test_tables_follow_the_sad(steps):
    k = Kernel(ManualClock(), topology=load_topology("default"))
    nl = Nl(k)
    links = k.netns("default").links
    nsim, soe_port = links.by_name("nsim0").xfrmdev_ops, links.by_name("soe0").xfrmdev_ops
    have = {"nsim0": set(), "soe0": set(), "soe2": set()}
    # start with 31 SAs in netdevsim's table and 30 in the SOE's: short sequences reach the
    # limits, and deletes take them back below
    steps = [("add", "nsim0", n) for n in range(31)] + \
            [("add", port, n) for port in ("soe0", "soe2") for n in range(15)] + steps
    seen_full = False
    for op, dev, n in steps:
        spi = 0x1000 + n if dev == "nsim0" else (0x2000 if dev == "soe0" else 0x3000) + n % 20
        soe_used = len(have["soe0"]) + len(have["soe2"])
        if op == "add":
            if dev == "nsim0":
                got = nl.errno_of(sa(k, "nsim0", 0, spi=spi))
                if len(have[dev]) == 33:
                    want = (-E.ENOSPC, "netdevsim: No space for SA in Rx table!")
                elif spi in have[dev]:
                    want = (-E.EEXIST, None)    # offloaded, then refused by xfrm_state_add
                else:
                    want = (0, None)
            else:
                got = nl.errno_of(soe(k, dev, PACKET, spi=spi))
                if spi in have[dev]:
                    want = DUP_SOE
                elif soe_used == 32:
                    want = (-E.ENOSPC, "Device failed to offload this state")
                else:
                    want = (0, None)
            assert got == want, (op, dev, hex(spi))
            seen_full |= want[0] == -E.ENOSPC
            if want[0] == 0:
                have[dev].add(spi)
        else:
            nl.k.deliver(nl.s, delsa(NSIM_DST if dev == "nsim0" else SOE_DST, spi))
            nl.recv_all()
            have[dev].discard(spi)
        assert nsim.count == len(have["nsim0"])
        assert sorted(e["spi"] for e in nsim.table(links.by_name("nsim0"))) == sorted(have["nsim0"])
        assert sorted(e["spi"] for e in soe_port.table(links.by_name("soe0"))) == sorted(have["soe0"] | have["soe2"])
    assert len(sad(nl)) == sum(len(v) for v in have.values())
    event_note(seen_full)


def event_note(full: bool) -> None:
    from hypothesis import event
    event("hit a hardware table limit" if full else "stayed below the limits")
