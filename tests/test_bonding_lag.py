"""LAG IPsec offload on bonds (docs/bonding.md): the RFC's ``replicated`` model and the newest
series' ``shared`` model, per driver pair — mlx5-like+mlx5-like, SOE+SOE on one engine, SOE
ports of two engines, mixed drivers, netdevsim — each admission rule and refusal message,
rollback leaving no replica, topology and hash-policy changes, and the S7 admission table
(P39, P40). Sans-IO: netlink requests straight into the kernel model."""
from __future__ import annotations

import errno as E
import pathlib
import struct
import tomllib

import pytest

from bonding.offload import (BondIpsec, bond_ipsec_xfrm_hash, bond_ipsec_xmit_dev,
                             bond_lag_esp_eligible)
from devices.features import set_features
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import services
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.topology import Topology

from .conftest import require_shim, xfrmd_run
from .sad_helpers import A, M, Nl, algo2, messages, msg, usersa_info

DEFAULT_TOPOLOGY = pathlib.Path(__file__).parent.parent / "xfrmd" / "topologies" / "default.toml"
GCM = N.nla(A.ALG_AEAD, algo2("rfc4106(gcm(aes))", bytes(range(20)), 128))
IN, PACKET = X.XFRM_OFFLOAD_INBOUND, X.XFRM_OFFLOAD_PACKET

TOPO = """
[[netns]]
name = "default"
""" + "".join(f"""
[[netns.device]]
name = "{name}"
kind = "{kind}"
nic = "{nic}"
master = "{master}"
""" + ("lag_converted = true\n" if kind == "mlx5" and name[0] in "my" else "") for name, kind, nic, master in [
    # m*, y0: the RFC example's converted mlx5-like port (lag_converted); u*, a*: as
    # upstream mlx5, no LAG opt-in
    ("m0", "mlx5", "mlx5-A", "bondm"), ("m1", "mlx5", "mlx5-A", "bondm"),
    ("s0", "airoha-soe", "soe-A", "bonds"), ("s1", "airoha-soe", "soe-A", "bonds"),
    ("x0", "airoha-soe", "soe-A", "bondx"), ("x1", "airoha-soe", "soe-B", "bondx"),
    ("y0", "mlx5", "mlx5-B", "bondy"), ("y1", "airoha-soe", "soe-A", "bondy"),
    ("n0", "netdevsim", "nsim-A", "bondn"), ("n1", "netdevsim", "nsim-A", "bondn"),
    ("a0", "mlx5", "mlx5-C", "bonda"), ("a1", "mlx5", "mlx5-C", "bonda"),
    ("u0", "mlx5", "mlx5-D", "bondu"), ("u1", "mlx5", "mlx5-D", "bondu"),
]) + "".join(f"""
[[netns.device]]
name = "{name}"
kind = "bond"
mode = "{mode}"
xmit_hash_policy = "layer3+4"
""" for name, mode in [("bondm", "802.3ad"), ("bonds", "802.3ad"), ("bondx", "balance-xor"),
                       ("bondy", "802.3ad"), ("bondn", "802.3ad"), ("bonda", "active-backup"),
                       ("bondu", "802.3ad")])

PAIRS = {"bondm": "mlx5+mlx5", "bonds": "soe+soe same engine", "bondx": "soe+soe two engines",
         "bondy": "mlx5+soe", "bondn": "netdevsim+netdevsim"}


@pytest.fixture
def k():
    return Kernel(ManualClock(), topology=Topology(tomllib.loads(TOPO), TOPO, "lag"))


@pytest.fixture
def nl(k):
    return Nl(k)


def dev(k, name):
    return k.netns("default").links.by_name(name)


def model(k, bond, m, **kw):
    return services.handle(k, "default", {"op": "lag_model", "bond": bond, "model": m, **kw})


def sa(k, on, oflags=PACKET, *, spi=0x100, src="203.0.113.1", dst="203.0.113.2", **kw):
    kw.setdefault("replay_window", 64 if oflags & IN else 0)
    if oflags & IN:
        src, dst = dst, src
    extra = b""
    if kw["replay_window"] > 32 and not kw.get("flags", 0) & X.XFRM_STATE_ESN:
        # a window beyond the 32-bit legacy bitmap needs xfrm_replay_state_esn
        extra = N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I2I", 2, 0, 0, 0, 0, kw["replay_window"], 0, 0))
        kw["replay_window"] = 0
    if kw.get("flags", 0) & X.XFRM_STATE_ESN:
        # xfrm_replay_state_esn: bmp_len 2, oseq, seq, oseq_hi, seq_hi, replay_window 64
        extra = N.nla(A.REPLAY_ESN_VAL, struct.pack("=6I2I", 2, 0, 0, 0, 0, 64, 0, 0))
    return msg(M.NEWSA, usersa_info(src=src, dst=dst, spi=spi, reqid=1, **kw) + GCM + extra
               + N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", dev(k, on).ifindex, oflags)))


def sad(nl):
    nl.k.deliver(nl.s, msg(M.GETSA, b"", N.NLM_F_REQUEST | N.NLM_F_DUMP))
    return [m for d in nl.recv_all() for m in messages(d) if m[0] == M.NEWSA]


def hw(k, *ports) -> int:
    """Hardware SAs the ports' drivers hold (the SOE engine's table counted once)."""
    seen, n = set(), 0
    for p in ports:
        d = dev(k, p)
        for row in d.xfrmdev_ops.table(d):
            key = (id(d.xfrmdev_ops if d.kind == "mlx5" else getattr(d.xfrmdev_ops, "engine", d)),
                   row["handle"])
            if d.kind == "mlx5" and row["port"] != p:
                continue
            if key not in seen:
                seen.add(key)
                n += 1
    return n


def esp(k, name, on=True):
    return set_features(dev(k, name), {"esp-hw-offload": on})


def esp_on(k, name) -> bool:
    return dev(k, name).features.active("esp-hw-offload")


def entries(k, bond) -> list[BondIpsec]:
    return dev(k, bond).bond.ipsec_list


# -- model replicated (the RFC) -----------------------------------------------------------------

def test_replicated_lag_starts_with_esp_off_and_refuses_until_opt_in(k, nl):
    """RFC R3/R4: LAG ESP features are user controlled and start off."""
    assert model(k, "bondm", "replicated") == {"errno": 0}
    assert not esp_on(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")
    # crypto offload: EOPNOTSUPP → software, the ACK carries the message as a warning
    assert nl.errno_of(sa(k, "bondm", 0, spi=0x101)) == (0, "bonding: Bond IPsec offload is disabled")
    assert len(sad(nl)) == 1 and hw(k, "m0", "m1") == 0


def test_replicated_mlx5_pair_gets_one_replica_per_slave(k, nl):
    model(k, "bondm", "replicated")
    assert esp(k, "bondm") == (0, None) and esp_on(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    assert nl.errno_of(sa(k, "bondm", PACKET | IN, spi=0x200)) == (0, None)
    # two SAs × two slaves, each its own hardware SA on its port
    assert [len(dev(k, p).xfrmdev_ops.table(dev(k, p))) for p in ("m0", "m1")] == [2, 2]
    e = entries(k, "bondm")
    assert all(x.replicated and len(x.instances) == 2 for x in e)
    for x in e:
        a, b = x.instances
        assert a.lower_handle and b.lower_handle        # each port's own table entry
        # per-port contexts in the driver, found through xfrm_dev_state_lower_handle
        assert hw_ctx(x.x, a.real_dev) == f"{a.real_dev.name} sa {a.lower_handle}"
        assert hw_ctx(x.x, b.real_dev) == f"{b.real_dev.name} sa {b.lower_handle}"
    from xfrmd.xfrm.offload import xfrm_dev_state_lower_handle
    x = e[0].x
    assert [xfrm_dev_state_lower_handle(x, dev(k, p)) for p in ("m0", "m1")] == \
        [i.lower_handle for i in e[0].instances]
    assert x.xso.real_dev is None and x.xso.offload_handle == 0
    # delete: every replica leaves its port
    nl.ok(msg(M.FLUSHSA, struct.pack("=B", 0)))
    assert hw(k, "m0", "m1") == 0 and entries(k, "bondm") == []


def test_replicated_soe_pair_shares_one_hardware_sa_and_context(k, nl):
    model(k, "bonds", "replicated")
    assert esp(k, "bonds") == (0, None)
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    (e,) = entries(k, "bonds")
    a, b = e.instances
    assert a.lower_handle == b.lower_handle             # one SOE slot, both ports
    # one engine slot: both ports resolve the same hardware context
    assert hw_ctx(e.x, a.real_dev) == hw_ctx(e.x, b.real_dev) == f"soe-A slot {a.lower_handle}"
    assert hw(k, "s0", "s1") == 1
    nl.ok(msg(M.FLUSHSA, struct.pack("=B", 0)))
    assert hw(k, "s0", "s1") == 0


def test_replicated_netdevsim_refused_naming_the_slave(k, nl):
    model(k, "bondn", "replicated")
    assert esp(k, "bondn") == (0, None)          # netdevsim's HW_ESP is fixed on
    msg_ = "bonding: Not all slaves support IPsec offload (slave n0: no XFRMDEV_OPS_F_LOWER_HANDLE)"
    # netdevsim cannot do packet offload anyway; the bond refuses first
    assert nl.errno_of(sa(k, "bondn")) == (-E.EOPNOTSUPP, msg_)
    # crypto: software fallback, warning in the ACK, nothing in either port's table
    assert nl.errno_of(sa(k, "bondn", 0, spi=0x300)) == (0, msg_)
    assert [dev(k, p).xfrmdev_ops.count for p in ("n0", "n1")] == [0, 0]


def test_replicated_mixed_pair_rolls_back_the_first_replica(k, nl):
    """mlx5 accepts the crypto SA, the SOE refuses crypto: the mlx5 replica is deleted."""
    model(k, "bondy", "replicated")
    assert esp(k, "bondy") == (0, None)
    assert nl.errno_of(sa(k, "bondy", 0)) == (0, "airoha_eth: SOE supports XFRM packet offload only (slave y1)")
    assert hw(k, "y0", "y1") == 0 and entries(k, "bondy") == []
    x = sad(nl)
    assert len(x) == 1 and A.OFFLOAD_DEV not in _attrs(x[0])      # software SA
    # packet offload: the mlx5 side accepts, the SOE side refuses XFRM_STATE_NOECN
    assert nl.errno_of(sa(k, "bondy", PACKET | IN, spi=0x201, flags=X.XFRM_STATE_NOECN)) == (
        -E.EOPNOTSUPP, "airoha_eth: SOE cannot disable ECN processing (slave y1)")
    assert hw(k, "y0", "y1") == 0
    # packet offload both accept: two contexts (different drivers never share)
    assert nl.errno_of(sa(k, "bondy", PACKET | IN, spi=0x202)) == (0, None)
    (e,) = entries(k, "bondy")
    a, b = e.instances
    assert hw_ctx(e.x, a.real_dev) != hw_ctx(e.x, b.real_dev)


def test_replicated_soe_two_engines_accepts_with_separate_contexts(k, nl):
    model(k, "bondx", "replicated")
    assert esp(k, "bondx") == (0, None)
    assert nl.errno_of(sa(k, "bondx")) == (0, None)
    (e,) = entries(k, "bondx")
    a, b = e.instances
    # two engines: a slot on each, one context each
    assert hw_ctx(e.x, a.real_dev).split()[0] != hw_ctx(e.x, b.real_dev).split()[0]
    assert hw(k, "x0", "x1") == 2


def test_replicated_esn_and_mode_refusals(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm", flags=X.XFRM_STATE_ESN, replay_window=0)) == (
        -E.EOPNOTSUPP, "bonding: LAG does not support XFRM ESN offload")
    b = dev(k, "bondm").bond
    b.ipsec_lag_block_count = 1
    assert nl.errno_of(sa(k, "bondm")) == (-E.EAGAIN, "bonding: Bond LAG XFRM state add is blocked")
    b.ipsec_lag_block_count = 0
    b.set_xmit_hash_policy("layer2")
    assert nl.errno_of(sa(k, "bondm")) == (-E.EOPNOTSUPP, "bonding: Bond mode does not support IPsec offload")


def test_replicated_no_running_slave(k, nl):
    """R2 answers ENODEV when no slave runs, but R3's feature fixup already took HW_ESP off
    the bond then, and that check comes first."""
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    for p in ("m0", "m1"):
        _down(k, p)
    assert not esp_on(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")


def test_replicated_slave_down_and_up_remove_and_add_its_replica(k, nl):
    """RFC R4: DOWN deletes only that slave's replica; UP re-creates it at seq 0 (S2)."""
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    (e,) = entries(k, "bondm")
    m0 = dev(k, "m0")
    m0.xfrmdev_ops.sadb[e.instances[0].lower_handle]["oseq"] = 1000   # 1000 sent on m0
    _down(k, "m0")
    assert [i.real_dev.name for i in e.instances] == ["m1"]
    assert [len(dev(k, p).xfrmdev_ops.sadb) for p in ("m0", "m1")] == [0, 1]
    _up(k, "m0")
    assert [i.real_dev.name for i in e.instances] == ["m1", "m0"]
    assert m0.xfrmdev_ops.hw_context(m0, e.x)["oseq"] == 0   # a new hardware SA
    assert len(sad(nl)) == 1                        # the SA itself stays


def test_replicated_carrier_loss_moves_the_pin_not_the_replica(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    (e,) = entries(k, "bondm")
    x = e.x
    first = bond_ipsec_xmit_dev(dev(k, "bondm").bond, x)
    other = ({"m0", "m1"} - {first.name}).pop()
    services.handle(k, "default", {"op": "link_carrier", "dev": first.name, "on": False})
    assert len(e.instances) == 2                     # RFC: carrier does not remove replicas
    assert bond_ipsec_xmit_dev(dev(k, "bondm").bond, x).name == other


def test_replicated_release_drops_only_that_slave(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    b = dev(k, "bondm").bond
    b.release(dev(k, "m1"))
    (e,) = entries(k, "bondm")
    assert [i.real_dev.name for i in e.instances] == ["m0"]
    assert hw(k, "m1") == 0 and hw(k, "m0") == 1
    # enslaving it again replicates onto it
    b.enslave(dev(k, "m1"))
    assert [i.real_dev.name for i in e.instances] == ["m0", "m1"]


def test_replicated_enslaving_an_unfit_slave_flushes_every_bond_state(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    b, n0 = dev(k, "bondm").bond, dev(k, "n0")
    dev(k, "bondn").bond.release(n0)
    b.enslave(n0)                                    # netdevsim: no LOWER_HANDLE
    assert sad(nl) == [] and hw(k, "m0", "m1") == 0


def test_replicated_hash_policy_change_leaving_lag_flushes(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    dev(k, "bondm").bond.set_xmit_hash_policy("layer2+3")
    assert sad(nl) == [] and hw(k, "m0", "m1") == 0


def test_esp_off_on_a_lag_bond_flushes_states_and_keeps_policies(k, nl):
    """bond_set_features turning HW_ESP off: bond_ipsec_lag_begin_flush +
    xfrm_dev_state_flush(bond) (lag-offload.md A.7) — the bond's states go, the policies
    offloaded to it stay (only NETDEV_DOWN / UNREGISTER's xfrm_dev_down flushes those)."""
    from .test_offload import policy
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    assert nl.errno_of(policy(k, "bondm", 1)) == (0, None)
    esp(k, "bondm", False)
    assert sad(nl) == [] and hw(k, "m0", "m1") == 0
    spd = k.netns("default").xfrm.spd
    assert [p.xdo.dev.name for p in spd.all.values() if p.xdo is not None] == ["bondm"]


def test_replicated_active_backup_keeps_upstream_behaviour(k, nl):
    model(k, "bonda", "replicated")
    assert esp_on(k, "bonda")
    assert nl.errno_of(sa(k, "bonda")) == (0, None)
    (e,) = entries(k, "bonda")
    assert not e.replicated and e.x.xso.real_dev is dev(k, "a0")


# -- model shared (the newest series) ------------------------------------------------------------

@pytest.mark.parametrize("bond, ok, reason", [
    ("bondm", False, "slave m0: no XFRMDEV_OPS_F_LAG_SHARED_STATE"),
    ("bonds", True, ""),
    ("bondx", False, "slaves x0 and x1 do not share one offload engine (xdo_dev_state_lag_compatible)"),
    ("bondy", False, "slave y0: no XFRMDEV_OPS_F_LAG_SHARED_STATE"),
    ("bondn", False, "slave n0: no xdo_dev_state_free"),
    ("bonda", True, ""),
])
def test_shared_esp_eligibility_per_pair(k, bond, ok, reason):
    model(k, bond, "shared")
    assert bond_lag_esp_eligible(dev(k, bond).bond) == (ok, reason)
    assert bool(bond_lag_esp_eligible(dev(k, bond).bond)) is ok
    assert esp_on(k, bond) is ok                    # wanted is set; active follows the slaves


def test_shared_esp_eligibility_rules(k):
    b = dev(k, "bonds").bond
    model(k, "bonds", "shared")
    b.set_xmit_hash_policy("layer2")
    assert bond_lag_esp_eligible(b) == (False, "bond mode 802.3ad with xmit_hash_policy layer2 "
                                               "cannot use IPsec offload")
    assert not esp_on(k, "bonds")
    b.set_xmit_hash_policy("layer3+4")
    assert esp_on(k, "bonds")
    for p in ("s0", "s1"):
        _down(k, p)
    assert bond_lag_esp_eligible(b) == (False, "no running slave")
    model(k, "bondm", "off")
    assert bond_lag_esp_eligible(dev(k, "bondm").bond) == (True, "")


@pytest.mark.parametrize("bond, oflags, err", [
    # S7 row 1: no LAG_SHARED_STATE → esp-hw-offload off
    ("bondm", PACKET, (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")),
    ("bondm", 0, (0, "bonding: Bond IPsec offload is disabled")),       # crypto: software
    ("bondx", PACKET, (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")),
    ("bondy", PACKET, (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")),
    ("bondn", 0, (0, "bonding: Bond IPsec offload is disabled")),
    # S7 row 2: SOE ports of one SoC
    ("bonds", PACKET, (0, None)),
    # the lower's own refusal passes through with its module
    ("bonds", 0, (0, "airoha_eth: SOE supports XFRM packet offload only")),
])
def test_shared_admission_per_pair(k, nl, bond, oflags, err):
    model(k, bond, "shared")
    assert nl.errno_of(sa(k, bond, oflags)) == err
    ok = err == (0, None)
    assert len(entries(k, bond)) == int(ok)


def test_shared_installs_once_on_the_pinned_slave(k, nl):
    model(k, "bonds", "shared")
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    (e,) = entries(k, "bonds")
    x = e.x
    b = dev(k, "bonds").bond
    usable = b.usable_slaves()
    assert e.lag and e.real_dev is usable[bond_ipsec_xfrm_hash(x) % 2]
    assert hw(k, "s0", "s1") == 1
    from xfrmd.xfrm.offload import xfrm_dev_state_lower_handle
    # the handle resolves from both ports and from the bond; not from a stranger
    h = x.xso.offload_handle
    assert [xfrm_dev_state_lower_handle(x, dev(k, p)) for p in ("s0", "s1", "bonds", "x0")] == [h, h, h, 0]
    assert bond_ipsec_xmit_dev(b, x) is e.real_dev
    nl.ok(msg(M.FLUSHSA, struct.pack("=B", 0)))
    assert hw(k, "s0", "s1") == 0 and entries(k, "bonds") == []


def test_shared_pinning_hash_by_hand():
    """bond_ipsec_xfrm_hash for SPI 0x100, ESP, AF_INET, 203.0.113.2 ← 203.0.113.1:
    spi bytes 00 00 01 00 read LE = 0x00010000; ^ 50 ^ 2 = 0x00010030; daddr 0x020071cb ^
    saddr 0x010071cb = 0x03000000 → 0x03010030; ^ >>16 (0x0301) = 0x03010331;
    ^ >>8 (0x030103) = 0x03020232."""
    from types import SimpleNamespace as NS
    x = NS(id=NS(spi=0x100, proto=50, daddr=bytes([203, 0, 113, 2]) + bytes(12)),
           family=2, saddr=bytes([203, 0, 113, 1]) + bytes(12), encap=None)
    assert bond_ipsec_xfrm_hash(x) == 0x03020232
    x.encap = NS(encap_sport=4500, encap_dport=4500)
    # 4500 = 0x1194 → LE u16 0x9411: ^ (0x9411 << 16) ^ 0x9411 before folding
    h = 0x03010030 ^ (0x9411 << 16) ^ 0x9411
    h ^= h >> 16
    h ^= h >> 8
    assert bond_ipsec_xfrm_hash(x) == h


@pytest.mark.parametrize("kw, oflags, err", [
    ({"flags": X.XFRM_STATE_ESN, "replay_window": 0}, PACKET,
     (-E.EOPNOTSUPP, "bonding: LAG does not support XFRM ESN offload")),
    # the SOE's own refusal after the bond's checks (a replay window of 32 is accepted
    # since fbfe8f9's airoha_soe_build_replay: tests/test_lag_flags.py)
    ({"flags": X.XFRM_STATE_NOECN}, PACKET | IN,
     (-E.EOPNOTSUPP, "airoha_eth: SOE cannot disable ECN processing")),
])
def test_shared_s7_refusals(k, nl, kw, oflags, err):
    model(k, "bonds", "shared")
    assert nl.errno_of(sa(k, "bonds", oflags, **kw)) == err
    assert hw(k, "s0", "s1") == 0 and entries(k, "bonds") == []


def test_shared_blocked_and_no_eligible_slave(k, nl):
    model(k, "bonds", "shared")
    b = dev(k, "bonds").bond
    b.ipsec_lag_block_count = 1
    assert nl.errno_of(sa(k, "bonds")) == (-E.EAGAIN, "bonding: Bond LAG XFRM state add is blocked")
    b.ipsec_lag_block_count = 0
    for p in ("s0", "s1"):
        services.handle(k, "default", {"op": "link_carrier", "dev": p, "on": False})
    # HW_ESP stays (slaves still run) but no slave is usable
    assert esp_on(k, "bonds")
    assert nl.errno_of(sa(k, "bonds")) == (-E.ENODEV, "bonding: No eligible IPsec offload slave")


def test_shared_acquire_state_refused(k):
    from types import SimpleNamespace as NS
    from devices.xfrmdev import OffloadError
    from xfrmd.xfrm.offload import XFRM_DEV_OFFLOAD_FLAG_ACQ, XfrmDevOffload
    model(k, "bonds", "shared")
    bond = dev(k, "bonds")
    x = NS(xso=XfrmDevOffload(bond, 2, 2), flags=0)
    x.xso.flags = XFRM_DEV_OFFLOAD_FLAG_ACQ
    with pytest.raises(OffloadError) as ei:
        bond.xfrmdev_ops.xdo_dev_state_add(bond, x)
    assert (ei.value.errno, ei.value.msg) == (E.EOPNOTSUPP, "LAG does not support acquire offload states")


def test_shared_mode_refusal(k, nl):
    model(k, "bonds", "shared")
    b = dev(k, "bonds").bond
    b.set_xmit_hash_policy("layer2")
    assert nl.errno_of(sa(k, "bonds")) == (-E.EOPNOTSUPP, "bonding: Bond mode does not support IPsec offload")


@pytest.mark.parametrize("change", ["carrier", "down", "release", "enslave", "hash", "esp-off"])
def test_shared_topology_changes_flush_every_bond_state(k, nl, change):
    """P40 / S7 last row: no migration, no DELSA; the IKE daemon must reinstall."""
    model(k, "bonds", "shared")
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    assert nl.errno_of(sa(k, "bonds", PACKET | IN, spi=0x200)) == (0, None)
    listener = Nl(k, groups=(X.XfrmNlGrp.SA,), pid=4343)
    b = dev(k, "bonds").bond
    if change == "carrier":
        services.handle(k, "default", {"op": "link_carrier", "dev": "s1", "on": False})
    elif change == "down":
        _down(k, "s1")
    elif change == "release":
        b.release(dev(k, "s1"))
    elif change == "enslave":
        dev(k, "bondx").bond.release(dev(k, "x0"))
        b.enslave(dev(k, "x0"))
    elif change == "hash":
        b.set_xmit_hash_policy("layer2")
    else:
        assert esp(k, "bonds", False) == (0, None)
    assert sad(nl) == [] and hw(k, "s0", "s1") == 0 and entries(k, "bonds") == []
    assert listener.recv_all() == []                # xfrm_dev_state_flush notifies nobody
    assert b.ipsec_lag_block_count == 0
    if change == "hash":
        assert nl.errno_of(sa(k, "bonds", spi=0x300)) == (
            -E.EOPNOTSUPP, "bonding: Bond mode does not support IPsec offload")
    elif change != "esp-off":
        assert nl.errno_of(sa(k, "bonds", spi=0x300)) == (0, None)   # the bond offloads again


def test_shared_flush_notify_switch_sends_delsa(k, nl):
    assert model(k, "bonds", "shared", notify_flush=True) == {"errno": 0}
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    listener = Nl(k, groups=(X.XfrmNlGrp.SA,), pid=4343)
    services.handle(k, "default", {"op": "link_carrier", "dev": "s0", "on": False})
    got = [m[0] for d in listener.recv_all() for m in messages(d)]
    assert got == [M.DELSA]


def test_shared_active_backup_refuses_netdevsim_without_free(k, nl):
    """A.12: the newest bond wants xdo_dev_state_free even in active-backup."""
    b = dev(k, "bondn").bond
    b.set_mode("active-backup")
    model(k, "bondn", "shared")
    assert nl.errno_of(sa(k, "bondn", 0)) == (0, "bonding: Slave does not support IPsec offload")
    assert [dev(k, p).xfrmdev_ops.count for p in ("n0", "n1")] == [0, 0]
    model(k, "bondn", "off")
    assert nl.errno_of(sa(k, "bondn", 0, spi=0x101)) == (0, None)
    assert dev(k, "n0").xfrmdev_ops.count == 1


def test_shared_active_backup_failover_moves_the_sa(k, nl):
    model(k, "bonda", "shared")
    assert nl.errno_of(sa(k, "bonda")) == (0, None)
    services.handle(k, "default", {"op": "link_carrier", "dev": "a0", "on": False})
    assert [len(dev(k, p).xfrmdev_ops.sadb) for p in ("a0", "a1")] == [0, 1]
    (e,) = entries(k, "bonda")
    assert e.x.xso.real_dev is dev(k, "a1")


def test_model_switch_refused_while_sas_exist(k, nl):
    model(k, "bonds", "shared")
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    assert model(k, "bonds", "replicated")["errno"] == E.EBUSY
    assert model(k, "bonds", "bogus")["errno"] == E.EINVAL


def test_off_model_lower_refusal_keeps_the_lower_module(k, nl):
    """Upstream hands the user's extack to the slave: its module prefixes the message."""
    assert nl.errno_of(sa(k, "bonda", 0, replay_window=0, mode=4)) == (
        -E.EINVAL, "mlx5_core: Only transport and tunnel xfrm states may be offloaded")


# -- policies on the bond (validation only) -----------------------------------------------------

def test_policy_offload_on_a_lag_bond(k, nl):
    from .test_offload import policy
    assert nl.errno_of(policy(k, "bonds", 1)) == (-E.EINVAL, "Policy offload is not supported")
    model(k, "bonds", "shared")
    assert nl.errno_of(policy(k, "bonds", 1)) == (0, None)
    model(k, "bondm", "shared")
    assert nl.errno_of(policy(k, "bondm", 1)) == (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")


# -- show-offload -------------------------------------------------------------------------------

def test_show_offload_bond_replicated(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    assert services.handle(k, "default", {"op": "offload_traffic", "dev": "bondm", "spi": 0x100,
                                          "packets": 3, "bytes": 300}) == {"errno": 0}
    r = services.handle(k, "default", {"op": "show_offload", "dev": "bondm"})
    d = r["devices"]["bondm"]
    assert d["lag_model"] == "replicated" and d["usable_slaves"] == ["m0", "m1"]
    (s,) = d["sas"]
    assert s["model"] == "replicated" and [r["slave"] for r in s["replicas"]] == ["m0", "m1"]
    pinned = [r for r in s["replicas"] if r["slave"] == s["xmit_slave"]][0]
    ctx = s["contexts"][pinned["context"]]
    assert (ctx["oseq"], ctx["packets"], ctx["scope"]) == (3, 3, "port")
    assert [r["context"] for r in s["replicas"]] == [f"m0 sa {s['replicas'][0]['handle']}",
                                                     f"m1 sa {s['replicas'][1]['handle']}"]
    # the mlx5 flow counter of the pinned port's hardware SA moved
    port = dev(k, s["xmit_slave"])
    assert [row["packets"] for row in port.xfrmdev_ops.table(port)] == [3]


def test_show_offload_bond_shared(k, nl):
    model(k, "bonds", "shared")
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    d = services.handle(k, "default", {"op": "show_offload", "dev": "bonds"})["devices"]["bonds"]
    (s,) = d["sas"]
    assert s["model"] == "shared" and s["valid_on"] == ["s0", "s1"] and s["slave"] in ("s0", "s1")
    d = services.handle(k, "default", {"op": "show_offload", "dev": "bondm"})["devices"]["bondm"]
    assert d["lag_model"] == "off" and "esp_ineligible" not in d


# -- helpers --------------------------------------------------------------------------------

def hw_ctx(x, port):
    """The id of the hardware context ``port``'s driver resolves for ``x``."""
    c = port.xfrmdev_ops.hw_context(port, x)
    return None if c is None else c["id"]


def _attrs(m):
    from .sad_helpers import attrs_of
    return attrs_of(m[4] if len(m) > 4 else m[-1], 224)


def _down(k, name):
    from devices.netdev import IFF_UP, call_netdevice_notifiers
    d = dev(k, name)
    d.flags &= ~IFF_UP
    call_netdevice_notifiers("NETDEV_DOWN", d)


def _up(k, name):
    from devices.netdev import IFF_UP, call_netdevice_notifiers
    d = dev(k, name)
    d.flags |= IFF_UP
    call_netdevice_notifiers("NETDEV_UP", d)


# -- notifications, topology ----------------------------------------------------------------------

def test_failover_sends_rtm_newlink_of_the_bond_and_no_xfrm_event(k, nl):
    """NETDEV_BONDING_FAILOVER → RTM_NEWLINK of the bond; the SA moving is silent."""
    assert nl.errno_of(sa(k, "bonda", 0)) == (0, None)
    rt = k.socket(N.NETLINK_ROUTE, pid=4444)
    k.bind(rt)
    k.setsockopt(rt, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 1)
    xl = Nl(k, groups=(X.XfrmNlGrp.SA,), pid=4545)
    services.handle(k, "default", {"op": "link_carrier", "dev": "a0", "on": False})
    got = []
    while (d := k.recv(rt)) is not None:
        got += [(m[0], struct.unpack_from("=BxHiII", m[4], 16)[2]) for m in messages(d)]
    # the slave's carrier change and the bond's failover
    assert sorted(got) == sorted([(16, dev(k, "a0").ifindex), (16, dev(k, "bonda").ifindex)])
    assert xl.recv_all() == []


def test_topology_lag_model_key():
    text = TOPO.replace('name = "bonds"\nkind = "bond"', 'name = "bonds"\nkind = "bond"\nlag_model = "shared"')
    k = Kernel(ManualClock(), topology=Topology(tomllib.loads(text), text, "lag"))
    b = dev(k, "bonds")
    assert b.bond.lag_model == "shared" and esp_on(k, "bonds")
    assert "esp-hw-offload" in b.features.wanted
    bad = TOPO.replace('name = "bonds"\nkind = "bond"', 'name = "bonds"\nkind = "bond"\nlag_model = "both"')
    with pytest.raises(Exception, match="lag_model 'both' is not one of off, replicated, shared"):
        Topology(tomllib.loads(bad), bad, "lag")


# -- through the real ip / ethtool and the replayer ------------------------------------------

KEY = "0x0102030405060708090a0b0c0d0e0f1011121314"
SCRIPT = f"""
xfrmd ctl lag-model bond1 shared
echo "xfrm state add src 192.0.2.129 dst 192.0.2.130 proto esp spi 0x100 reqid 1 mode tunnel \
aead 'rfc4106(gcm(aes))' {KEY} 128 offload packet dev bond1 dir out" | xfrmd replay - >/dev/null
ip xfrm state list | grep -c 'dev bond1'
xfrmd ctl show-offload bond1 | grep 'spi=0x100' | cut -d' ' -f4-7
xfrmd ctl lag-model bond0 shared
echo "xfrm state add src 192.0.2.129 dst 192.0.2.130 proto esp spi 0x101 reqid 1 mode tunnel \
aead 'rfc4106(gcm(aes))' {KEY} 128 offload packet dev bond0 dir out" | xfrmd replay - 2>&1 | grep -o 'bonding: .*'
xfrmd ctl lag-model bond0 replicated
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x200 reqid 1 mode tunnel \
aead 'rfc4106(gcm(aes))' {KEY} 128 offload dev bond0 dir out 2>&1
ethtool -K bond0 esp-hw-offload on; echo "rc=$?"
ethtool -k bond0 | grep '^esp-hw-offload'
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x201 reqid 1 mode tunnel \
aead 'rfc4106(gcm(aes))' {KEY} 128 offload dev bond0 dir out; echo "rc=$?"
ip xfrm state list | grep -c 'crypto offload parameters: dev bond0 dir out'
xfrmd ctl show-offload bond0 | grep -c '^    eth.*(per port)'
xfrmd ctl show-offload eth0 | grep -c 'spi=0x201'
xfrmd ctl show-offload eth1 | grep -c 'spi=0x201'
ip xfrm state flush
xfrmd ctl show-offload eth1 | grep -c 'spi=' || true
xfrmd ctl lag-model bond0 shared
ethtool -K bond0 esp-hw-offload on >/dev/null 2>&1; echo "rc=$?"
ethtool -k bond0 | grep '^esp-hw-offload'
xfrmd ctl show-offload bond0 | grep 'cannot'
"""


def test_lag_models_through_ip_ethtool_and_replay(tmp_path):
    require_shim("ip", "ethtool")
    # the default topology with bond0's mlx5-like ports converted (lag_converted): the RFC
    # example's port, which the replicated model admits
    topo = tmp_path / "converted.toml"
    topo.write_text(DEFAULT_TOPOLOGY.read_text().replace(
        'master = "bond0"\n', 'master = "bond0"\nlag_converted = true\n'))
    p = xfrmd_run(SCRIPT, topo)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "1",                                                  # packet SA on the SOE bond
        "dir=out type=packet model=shared slave=soe0",        # pinned (hash % 2 == 0)
        "bonding: Bond IPsec offload is disabled.",           # mlx5 bond: no shared state
        "Warning: bonding: Bond IPsec offload is disabled.",  # replicated: opt-in first
        "rc=0", "esp-hw-offload: on",
        "rc=0", "1",                                          # offloaded, on both slaves
        "2", "1", "1",
        "0",                                                  # the flush took both replicas
        "rc=1",                                               # shared over mlx5: stays off
        "esp-hw-offload: off [requested on]",
        "  esp-hw-offload cannot be on: slave eth0: no XFRMDEV_OPS_F_LAG_SHARED_STATE"]


# -- model off: hash policy and slave removal ----------------------------------------------------

def test_off_hash_policy_change_keeps_states_and_release_fails_over(k, nl):
    """Upstream: xmit_hash_policy changes do not touch XFRM; releasing the active slave of
    an active-backup bond moves its SAs to the next one (bond_change_active_slave)."""
    assert nl.errno_of(sa(k, "bonda")) == (0, None)
    b = dev(k, "bonda").bond
    b.set_xmit_hash_policy("layer2")
    assert len(sad(nl)) == 1 and len(dev(k, "a0").xfrmdev_ops.sadb) == 1
    b.release(dev(k, "a0"))
    assert [len(dev(k, p).xfrmdev_ops.sadb) for p in ("a0", "a1")] == [0, 1]
    assert entries(k, "bonda")[0].x.xso.real_dev is dev(k, "a1")


def test_off_lag_bond_uses_whatever_slave_is_active(k, nl):
    """Upstream bond_ipsec_add_sa does not check the mode: an 802.3ad bond offloads to its
    curr_active_slave, and a hash-policy change keeps it."""
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    assert [len(dev(k, p).xfrmdev_ops.sadb) for p in ("m0", "m1")] == [1, 0]
    dev(k, "bondm").bond.set_xmit_hash_policy("layer2")
    assert len(sad(nl)) == 1


def test_hash_policy_change_through_ip_link_flushes_shared_states():
    require_shim("ip")
    add = (f"echo \"xfrm state add src 192.0.2.129 dst 192.0.2.130 proto esp spi {{}} reqid 1 "
           f"mode tunnel aead 'rfc4106(gcm(aes))' {KEY} 128 offload packet dev bond1 dir out\" "
           "| xfrmd replay - 2>&1")
    script = f"""
xfrmd ctl lag-model bond1 shared
{add.format('0x100')} >/dev/null
ip xfrm state list | grep -c 'dev bond1'
ip link set bond1 type bond xmit_hash_policy layer2; echo "rc=$?"
ip xfrm state list | grep -c 'dev bond1'
{add.format('0x101')} | grep -o 'bonding: .*'
"""
    p = xfrmd_run(script)
    assert p.stdout.splitlines() == ["1", "rc=0", "0",
                                     "bonding: Bond mode does not support IPsec offload."], p.stderr
