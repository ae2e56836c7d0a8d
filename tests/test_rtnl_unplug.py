"""``xfrmd ctl link DEV unplug|replug``: a port hot-unplugged and probed again, with what
Linux does on unregister_netdevice / register_netdevice — RTM_DELLINK then RTM_NEWLINK on
RTNLGRP_LINK, the offloaded SAs flushed, a bond slave released, a new ifindex, and the port
back down without addresses."""
from __future__ import annotations

import errno as E
import struct
import subprocess
import sys

from netlink_codec import netlink as N
from xfrmd import services

from .sad_helpers import messages
from .test_offload import PACKET, k, nl, sa, sad  # noqa: F401

RTM_NEWLINK, RTM_DELLINK = 16, 17


def route_listener(k):
    s = k.socket(N.NETLINK_ROUTE, pid=777)
    k.bind(s, 0, 1)                         # RTNLGRP_LINK
    return s


def events(k, s):
    out = []
    while (d := k.recv(s)) is not None:
        for m in messages(d):
            if m[0] in (RTM_NEWLINK, RTM_DELLINK):
                ifindex = struct.unpack_from("=i", m[4], 16 + 4)[0]
                out.append((m[0], ifindex))
    return out


def q(k, op, dev):
    return services.handle(k, "default", {"op": op, "dev": dev})


def test_unplug_flushes_offloaded_sas_and_replug_gives_a_new_ifindex(k, nl):
    ns = k.netns("default")
    eth2 = ns.links.by_name("eth2")
    old = eth2.ifindex
    assert nl.errno_of(sa(k, "eth2", PACKET)) == (0, None)
    ops = eth2.xfrmdev_ops
    assert len(ops.table(eth2)) == 1
    rl = route_listener(k)
    assert q(k, "link_unplug", "eth2") == {"errno": 0}
    assert ns.links.by_name("eth2") is None
    assert sad(nl) == [] and ops.table(eth2) == []       # xfrm_dev_down on UNREGISTER
    assert events(k, rl)[-1] == (RTM_DELLINK, old)
    res = q(k, "link_replug", "eth2")
    assert res["errno"] == 0 and res["ifindex"] == ns.links.last_index and res["ifindex"] > old
    assert events(k, rl) == [(RTM_NEWLINK, res["ifindex"])]
    assert not eth2.up and eth2.addresses == [] and eth2.xfrmdev_ops is ops
    assert nl.errno_of(sa(k, "eth2", PACKET)) == (0, None)   # the driver works again


def test_unplugging_a_bond_slave_releases_it(k, nl):
    ns = k.netns("default")
    bond = ns.links.by_name("bond0")
    assert [d.name for d in bond.bond.slaves] == ["eth0", "eth1"]
    assert q(k, "link_unplug", "eth0") == {"errno": 0}
    assert [d.name for d in bond.bond.slaves] == ["eth1"]
    assert q(k, "link_replug", "eth0")["errno"] == 0
    assert ns.links.by_name("eth0").master is None


def test_errors(k, nl):
    assert q(k, "link_unplug", "nosuch")["errno"] == E.ENODEV
    assert q(k, "link_unplug", "lo")["errno"] == E.EOPNOTSUPP
    assert q(k, "link_replug", "eth2")["errno"] == E.ENODEV          # not unplugged
    assert q(k, "link_unplug", "eth2")["errno"] == 0
    from devices.netdev import NetDevice
    k.netns("default").links.register(NetDevice("eth2", "dummy"))    # the name is taken again
    assert q(k, "link_replug", "eth2")["errno"] == E.EEXIST


def test_through_xfrmd_ctl_and_ip():
    script = ("ip -o link show eth2 | cut -d: -f1-2; xfrmd_ctl link eth2 unplug; "
              "ip link show eth2; echo rc=$?; xfrmd_ctl link eth2 replug; "
              "ip -o link show eth2 | cut -d: -f1-2")
    ctl = f"{sys.executable} -m xfrmd.cli ctl"
    p = subprocess.run([sys.executable, "-m", "xfrmd.cli", "run", "--", "sh", "-c",
                        script.replace("xfrmd_ctl", ctl)], capture_output=True, text=True,
                       timeout=60)
    out = p.stdout.splitlines()
    assert out[0].endswith(": eth2") and out[-1].endswith(": eth2"), p.stdout + p.stderr
    assert 'Device "eth2" does not exist.' in p.stderr and "rc=1" in out
    assert int(out[-1].split(":")[0]) > int(out[0].split(":")[0])   # probed again: new ifindex
