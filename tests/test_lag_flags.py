"""LAG flags as published and the review's proposal as a switch (docs/bonding.md): the two
xfrmdev_ops bits, ``--require`` admission per pairing with its errno and extack, its bad
input, the mlx5-like port unconverted by default and converted by ``lag_converted``, the SOE
as the snapshot the review reply links (fbfe8f9), and ``xfrm_dst_offload_ok`` counting an
upper's ``upper_priv`` (RFC patch 1/4)."""
from __future__ import annotations

import errno as E
import json
import sys
import subprocess

import pytest

import devices.xfrmdev as xfrmdev
from netlink_codec import xfrm as X
from xfrmd import services
from xfrmd.topology import from_dict
from xfrmd.xfrm.offload import xfrm_dst_offload_ok
from xfrmd.lagreport.lab import PAIRINGS, topology

from .test_bonding_lag import IN, PACKET, dev, entries, esp, hw, k, model, nl, sa  # noqa: F401

XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def test_flags_are_the_published_bits_only():
    assert xfrmdev.XFRMDEV_OPS_F_LOWER_HANDLE == 1 << 0          # RFC patch 1/4
    assert xfrmdev.XFRMDEV_OPS_F_LAG_SHARED_STATE == 1 << 1      # the later public series
    assert not [n for n in dir(xfrmdev) if "TX_SEQ" in n or "RX_REPLAY" in n]
    assert xfrmdev.LAG_GUARANTEES == ("tx-seq", "rx-replay")


def test_declared_guarantees_per_driver(k):
    assert dev(k, "s0").xfrmdev_ops.lag_guarantees == {"tx-seq", "rx-replay"}
    for port in ("m0", "u0", "n0"):             # mlx5-like (converted or not), netdevsim
        assert dev(k, port).xfrmdev_ops.lag_guarantees == frozenset()


# -- --require, per pairing ----------------------------------------------------------------

NOT_ALL = "bonding: Not all slaves give the required LAG guarantees"


@pytest.mark.parametrize("bond, require, want", [
    ("bonds", "tx-seq,rx-replay", (0, None)),                         # SOE, one engine
    ("bondx", "tx-seq,rx-replay", (-E.EOPNOTSUPP, f"{NOT_ALL} (slave x1: tx-seq not shared with x0)")),
    ("bondx", "rx-replay", (-E.EOPNOTSUPP, f"{NOT_ALL} (slave x1: rx-replay not shared with x0)")),
    ("bondm", "tx-seq,rx-replay", (-E.EOPNOTSUPP, f"{NOT_ALL} (slave m0: no tx-seq)")),
    ("bondm", "rx-replay", (-E.EOPNOTSUPP, f"{NOT_ALL} (slave m0: no rx-replay)")),
    ("bondy", "rx-replay,tx-seq", (-E.EOPNOTSUPP, f"{NOT_ALL} (slave y0: no tx-seq)")),
    ("bondm", "none", (0, None)),                                     # the switch off
])
def test_require_admits_or_refuses_the_replicated_state(k, nl, bond, require, want):
    assert model(k, bond, "replicated", require=require) == {"errno": 0}
    assert esp(k, bond) == (0, None)
    ports = [s.name for s in dev(k, bond).bond.slaves]
    assert nl.errno_of(sa(k, bond)) == want
    if want[0]:                                  # refused before any slave was touched
        assert hw(k, *ports) == 0 and entries(k, bond) == []
    else:
        assert len(entries(k, bond)) == 1


def test_require_is_checked_by_the_shared_model_too(k, nl):
    k.netns("default").links.by_name("s1").xfrmdev_ops.lag_guarantees = frozenset({"rx-replay"})
    model(k, "bonds", "shared", require="tx-seq")
    assert nl.errno_of(sa(k, "bonds")) == (-E.EOPNOTSUPP, f"{NOT_ALL} (slave s1: no tx-seq)")
    assert hw(k, "s0", "s1") == 0
    model(k, "bonds", "shared", require="rx-replay")
    assert nl.errno_of(sa(k, "bonds")) == (0, None)


def test_require_refuses_a_slave_added_later_and_flushes(k, nl):
    """A replicated bond that replicates onto a slave without the guarantee flushes (R4:
    "failed to replicate IPsec SA, flushing bond states")."""
    model(k, "bonds", "replicated", require="tx-seq,rx-replay")
    esp(k, "bonds")
    assert nl.errno_of(sa(k, "bonds")) == (0, None)
    bond = dev(k, "bonds").bond
    s1 = dev(k, "s1")
    bond.release(s1)
    s1.xfrmdev_ops.lag_guarantees = frozenset()          # a driver declaring nothing
    bond.enslave(s1)
    assert entries(k, "bonds") == [] and hw(k, "s0", "s1") == 0


def test_require_shows_in_show_offload(k):
    model(k, "bonds", "replicated", require="rx-replay,tx-seq")
    d = services.handle(k, "default", {"op": "show_offload", "dev": "bonds"})["devices"]["bonds"]
    assert d["lag_require"] == ["tx-seq", "rx-replay"]


def test_require_bad_word_changes_nothing(k):
    model(k, "bonds", "replicated", require="tx-seq")
    r = model(k, "bonds", "shared", require="tx-seq,anti-replay")
    assert r["errno"] == -E.EINVAL or r["errno"] == E.EINVAL
    assert r["error"] == ("--require: 'anti-replay' is not a guarantee any driver declares "
                          "(allowed: tx-seq, rx-replay, or none)")
    b = dev(k, "bonds").bond
    assert b.lag_model == "replicated" and b.lag_require == ("tx-seq",)


def test_require_through_the_command_line():
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c",
                                "xfrmd ctl lag-model bond1 replicated --require tx-seq,rx-replay -v;"
                                "xfrmd ctl lag-model bond1 shared --require seq; echo rc=$?;"
                                "xfrmd ctl show-offload bond1 --json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "bond1: LAG offload model replicated, requiring tx-seq,rx-replay"
    assert lines[1] == "rc=1"
    assert p.stderr.splitlines() == [
        "xfrmd ctl: --require: 'seq' is not a guarantee any driver declares "
        "(allowed: tx-seq, rx-replay, or none)"]
    d = json.loads("\n".join(lines[2:]))["bond1"]
    assert d["lag_model"] == "replicated" and d["lag_require"] == ["tx-seq", "rx-replay"]


# -- topology personality keys -----------------------------------------------------------------

def _topo(**keys):
    return {"netns": [{"name": "default", "device": [keys]}]}


@pytest.mark.parametrize("device, line", [
    ({"name": "e0", "kind": "mlx5", "lag_converted": "yes"},
     "<dict>: device 'e0': lag_converted = 'yes' is not true or false"),
    ({"name": "e0", "kind": "airoha-soe", "lag_converted": True},
     "<dict>: device 'e0': lag_converted applies to kind mlx5 only, not airoha-soe"),
    ({"name": "e0", "kind": "mlx5", "lag_guarantees": "tx-seq"},
     "<dict>: device 'e0': lag_guarantees = 'tx-seq' is not a list of tx-seq, rx-replay"),
    ({"name": "e0", "kind": "mlx5", "lag_guarantees": ["tx-seq", "seq"]},
     "<dict>: device 'e0': lag_guarantees = ['tx-seq', 'seq'] is not a list of tx-seq, rx-replay"),
    ({"name": "b0", "kind": "bond", "lag_require": ["anti-replay"]},
     "<dict>: device 'b0': lag_require: 'anti-replay' is not a guarantee any driver declares "
     "(allowed: tx-seq, rx-replay)"),
    ({"name": "b0", "kind": "bond", "lag_require": 1},
     "<dict>: device 'b0': lag_require = 1 is not a list of tx-seq, rx-replay"),
    ({"name": "e0", "kind": "dummy", "lag_require": ["tx-seq"]},
     "<dict>: device 'e0': lag_require applies to kind bond only, not dummy"),
    ({"name": "e0", "kind": "mlx5", "capabilities": {"lag_lower_handle": True}},
     "<dict>: device 'e0': capabilities.lag_lower_handle is not a capability: use "
     "lag_converted = true"),
    ({"name": "e0", "kind": "mlx5", "capabilities": {"esn": "no"}},
     "<dict>: device 'e0': capabilities.esn = 'no' is not one of crypto, packet, tunnel, esn, "
     "espinudp, prio, eswitch_mode_change, eswitch_encap = true or false"),
])
def test_topology_personality_keys_bad_input(device, line):
    with pytest.raises(ValueError) as e:
        from_dict(_topo(**device))
    assert str(e.value) == line


def test_topology_personality_key_of_a_wrong_type_through_xfrmd_run(tmp_path):
    """One line naming the file's line, the value and what is allowed; nothing started."""
    path = tmp_path / "bad.toml"
    path.write_text('[[netns]]\nname = "default"\n[[netns.device]]\nname = "e0"\n'
                    'kind = "mlx5"\nlag_converted = "yes"\n')
    p = subprocess.run(XFRMD + ["run", "--topology", str(path), "--", "echo", "started"],
                       capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines() == [
        f"xfrmd run: {path}:6: device 'e0': lag_converted = 'yes' is not true or false"]


def test_topology_personality_keys_take_effect():
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    spec = {"netns": [{"name": "default", "device": [
        {"name": "e0", "kind": "mlx5", "lag_converted": True, "master": "b0"},
        {"name": "e1", "kind": "mlx5", "master": "b0"},
        {"name": "s0", "kind": "airoha-soe", "lag_guarantees": ["rx-replay"]},
        {"name": "b0", "kind": "bond", "mode": "802.3ad", "lag_require": ["rx-replay"]}]}]}
    kern = Kernel(ManualClock(), topology=from_dict(spec))
    links = kern.netns("default").links
    assert links.by_name("e0").xfrmdev_ops.flags == xfrmdev.XFRMDEV_OPS_F_LOWER_HANDLE
    assert links.by_name("e1").xfrmdev_ops.flags == 0
    assert links.by_name("s0").xfrmdev_ops.lag_guarantees == {"rx-replay"}
    assert links.by_name("b0").bond.lag_require == ("rx-replay",)


# -- the mlx5-like port: unconverted by default --------------------------------------------------

def test_unconverted_mlx5_is_refused_by_replicated_with_the_kernel_text(k, nl):
    model(k, "bondu", "replicated")
    assert esp(k, "bondu") == (0, None)
    assert nl.errno_of(sa(k, "bondu")) == (
        -E.EOPNOTSUPP,
        "bonding: Not all slaves support IPsec offload (slave u0: no XFRMDEV_OPS_F_LOWER_HANDLE)")
    assert hw(k, "u0", "u1") == 0
    # the converted pair (lag_converted = true) is admitted, one replica per slave
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm")) == (0, None)
    assert hw(k, "m0", "m1") == 2


def test_unconverted_mlx5_is_refused_by_shared(k, nl):
    model(k, "bondu", "shared")
    esp(k, "bondu")
    assert not dev(k, "bondu").features.active("esp-hw-offload")     # stays off
    d = services.handle(k, "default", {"op": "show_offload", "dev": "bondu"})["devices"]["bondu"]
    assert d["esp_ineligible"] == "slave u0: no XFRMDEV_OPS_F_LOWER_HANDLE"
    assert nl.errno_of(sa(k, "bondu")) == (-E.EOPNOTSUPP, "bonding: Bond IPsec offload is disabled")


def test_the_reports_mlx5_pairings_are_converted():
    for pairing in PAIRINGS:
        for d in topology(pairing, "replicated")["netns"][0]["device"]:
            if d["kind"] == "mlx5":
                assert d["lag_converted"] is True, pairing.name


# -- the SOE as fbfe8f9's airoha_soe_build_sa ----------------------------------------------------

@pytest.fixture
def soe():
    """A kernel with one SOE port on its own, and a NETLINK_XFRM socket on it."""
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel

    from .sad_helpers import Nl
    kern = Kernel(ManualClock(), topology=from_dict(
        {"netns": [{"name": "default", "device": [{"name": "p0", "kind": "airoha-soe"}]}]}))
    return kern, Nl(kern)


def _soe_table(kern):
    p0 = dev(kern, "p0")
    return p0.xfrmdev_ops.table(p0)


def test_soe_esn_message(soe):
    kern, sock = soe
    assert sock.errno_of(sa(kern, "p0", PACKET, flags=X.XFRM_STATE_ESN, replay_window=0)) == (
        -E.EOPNOTSUPP, "airoha_eth: SOE ESN is not supported yet")


def test_soe_programs_byte_and_packet_limits(soe):
    kern, sock = soe
    lft = (1000, 2000, 8, 10, 0, 0, 0, 0)
    assert sock.errno_of(sa(kern, "p0", PACKET, lft=lft)) == (0, None)
    (row,) = _soe_table(kern)
    assert (row["soft_byte_limit"], row["hard_byte_limit"], row["soft_packet_limit"],
            row["hard_packet_limit"]) == (1000, 2000, 8, 10)


def test_soe_keeps_the_later_series_refusals(soe):
    """Rules only in the later public series (046edd1), kept: use-time limits, NOECN."""
    kern, sock = soe
    assert sock.errno_of(sa(kern, "p0", PACKET, lft=(X.XFRM_INF,) * 4 + (0, 0, 5, 0))) == (
        -E.EOPNOTSUPP, "airoha_eth: SOE does not support use-time lifetime limits")
    assert sock.errno_of(sa(kern, "p0", PACKET, flags=X.XFRM_STATE_NOECN)) == (
        -E.EOPNOTSUPP, "airoha_eth: SOE cannot disable ECN processing")


@pytest.mark.parametrize("window, programmed", [(32, 64), (64, 64), (0, None)])
def test_soe_accepts_any_replay_window_and_rounds_it_up(soe, window, programmed):
    kern, sock = soe
    assert sock.errno_of(sa(kern, "p0", PACKET | IN, replay_window=window)) == (0, None)
    (row,) = _soe_table(kern)
    assert row.get("replay_window") == programmed


# -- xfrm_dst_offload_ok: an upper's upper_priv is offload state (RFC patch 1/4) ----------------

def test_xfrm_dst_offload_ok_counts_upper_priv(k, nl):
    model(k, "bondm", "replicated")
    esp(k, "bondm")
    assert nl.errno_of(sa(k, "bondm", 0)) == (0, None)       # crypto, replicated on m0, m1
    (e,) = entries(k, "bondm")
    x = e.x
    assert x.xso.offload_handle == 0 and x.xso.real_dev is None and x.xso.upper_priv is e
    bond, other = dev(k, "bondm"), dev(k, "n0")
    assert xfrm_dst_offload_ok(x, bond, 1) is True           # on its own device
    assert xfrm_dst_offload_ok(x, other, 1) is False         # offload state elsewhere: no GSO
    assert xfrm_dst_offload_ok(x, bond, 2) is False          # a nested bundle
    x.xso.upper_priv = None                                  # before patch 1/4: no handle,
    assert xfrm_dst_offload_ok(x, other, 1) is True          # so it looked like software
    x.xso.upper_priv = e


BOND_DP = {"netns": [{"name": "default", "device": [
    {"name": "m0", "kind": "mlx5", "nic": "mlx5-0", "master": "bond0", "lag_converted": True},
    {"name": "m1", "kind": "mlx5", "nic": "mlx5-0", "master": "bond0", "lag_converted": True},
    {"name": "bond0", "kind": "bond", "mode": "802.3ad", "xmit_hash_policy": "layer3+4",
     "lag_model": "replicated", "esp_hw_offload": True, "addresses": ["192.0.2.1/24"]},
    {"name": "dum0", "kind": "dummy", "addresses": ["198.51.100.1/24"]}]}]}


def test_the_data_path_reports_xfrm_dst_offload_ok_for_a_replicated_state():
    """Crypto offload through the replicated bond: the bundle keeps GSO on the bond's route;
    a state offloaded to the bond whose route leaves through dum0 falls back to software
    ESP and loses GSO — it has offload state (upper_priv), though no handle."""
    from xfrmd.clock import ManualClock
    from xfrmd.datapath.output import xfrm_xmit
    from xfrmd.kernel import Kernel

    from .datapath_helpers import TUNNEL, Nl, policy
    from .datapath_helpers import sa as dsa
    kern = Kernel(ManualClock(), topology=from_dict(BOND_DP))
    sock = Nl(kern)
    ifx = dev(kern, "bond0").ifindex
    out = X.XFRM_POLICY_OUT
    for src, dst, spi in (("192.0.2.1", "192.0.2.2", 0x1000),
                          ("198.51.100.1", "198.51.100.2", 0x1001)):
        sock.ok(dsa(src, dst, spi, offload=(ifx, 0)))
        sock.ok(policy(src, dst, out, [(src, dst, 1, TUNNEL)]))
    hops = {}
    for src, dst in (("192.0.2.1", "192.0.2.2"), ("198.51.100.1", "198.51.100.2")):
        [b] = xfrm_xmit(kern.netns("default"), src, dst, 17).to_dict()["batches"]
        hops[dst] = b["sas"][0]
    assert hops["192.0.2.2"]["path"] == "crypto-offload" and hops["192.0.2.2"]["gso"] is True
    assert hops["198.51.100.2"]["path"] == "software" and hops["198.51.100.2"]["gso"] is False
    assert "route leaves through dum0" in hops["198.51.100.2"]["fallback"]
