"""xfrm_state_find under packet offload: a hardware policy only resolves to hardware states
of its own device, a software lookup skips hardware states, and the larval state of an
acquire is handed to the policy's device (XFRM_DEV_OFFLOAD_FLAG_ACQ) before km_query — a
driver refusal means no ACQUIRE and no larval state."""
from __future__ import annotations

import errno as E

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import services

from .sad_helpers import Nl, messages, msg, usersa_info
from .test_offload import GCM, PACKET, k, nl, offload_attr, policy, sa, sad  # noqa: F401

G = X.XfrmNlGrp


def acquire(k):
    return services.handle(k, "default", {"op": "acquire", "src": "198.51.100.1",
                                          "dst": "198.51.100.2"})


def acquires(km):
    return [m for d in km.recv_all() for m in messages(d) if m[0] == X.XfrmMsg.ACQUIRE]


def table(k, dev):
    d = k.netns("default").links.by_name(dev)
    return d.xfrmdev_ops.table(d)


def ifindex(k, dev):
    return k.netns("default").links.by_name(dev).ifindex


def spi(m):
    return X.XfrmUsersaInfo.decode(m[4], 16).id.spi


def larval(nl):
    return [m for m in sad(nl) if spi(m) == 0]


def software_sa(spi=0x100):
    return msg(X.XfrmMsg.NEWSA, usersa_info(src="198.51.100.1", dst="198.51.100.2", spi=spi,
                                            reqid=1, mode=1) + GCM)


def software_policy(k):
    """The test_offload policy without its XFRMA_OFFLOAD_DEV (info + one template)."""
    body = bytes(policy(k, "eth2", 1)[16:16 + 168 + 4 + 64])
    return N.encode_msg(X.XfrmMsg.NEWPOLICY, N.NLM_F_REQUEST | N.NLM_F_ACK, 1, 0, body)


def test_hardware_policy_resolves_to_a_hardware_state_of_its_device(k, nl):
    assert nl.errno_of(policy(k, "eth2", 1)) == (0, None)
    assert nl.errno_of(sa(k, "eth2", PACKET, mode=1)) == (0, None)
    km = Nl(k, groups=(G.ACQUIRE,))
    assert acquire(k) == {"errno": 0, "acquired": [], "resolved": [0x100]}
    assert acquires(km) == []


@pytest.mark.parametrize("where", ["software", "other port"])
def test_hardware_policy_ignores_other_states(k, nl, where):
    """A software SA, or a hardware SA on another port, does not serve a packet-offloaded
    policy: the flow is acquired for, and the larval state is bound to the policy's port."""
    assert nl.errno_of(policy(k, "eth2", 1)) == (0, None)
    add = sa(k, "eth1", PACKET, mode=1) if where == "other port" else software_sa()
    assert nl.errno_of(add) == (0, None)
    km = Nl(k, groups=(G.ACQUIRE,))
    assert acquire(k) == {"errno": 0, "acquired": [1], "resolved": []}
    assert len(acquires(km)) == 1
    assert [offload_attr(m) for m in larval(nl)] == [(ifindex(k, "eth2"), PACKET)]
    assert table(k, "eth2") == []        # mlx5 takes an ACQ state without programming it


def test_software_policy_skips_hardware_states(k, nl):
    assert nl.errno_of(software_policy(k)) == (0, None)
    assert nl.errno_of(sa(k, "eth2", PACKET, mode=1)) == (0, None)
    km = Nl(k, groups=(G.ACQUIRE,))
    assert acquire(k) == {"errno": 0, "acquired": [1], "resolved": []}
    assert len(acquires(km)) == 1
    assert [offload_attr(m) for m in larval(nl)] == [None]      # a software larval state
    # and a software SA does serve it
    assert nl.errno_of(software_sa(spi=0x200)) == (0, None)
    assert acquire(k)["resolved"] == [0x200]


def test_driver_refusal_of_the_larval_state_sends_no_acquire(k, nl):
    """The Airoha SOE has no key to program for a larval state and refuses it: the state dies,
    no ACQUIRE reaches the key manager, and the lookup fails with the driver's errno."""
    assert nl.errno_of(policy(k, "soe0", 1)) == (0, None)
    km = Nl(k, groups=(G.ACQUIRE,))
    assert acquire(k) == {"errno": E.EOPNOTSUPP, "acquired": [], "resolved": []}
    assert acquires(km) == []
    assert larval(nl) == []


def test_no_key_manager_aborts_on_the_device(k, nl):
    assert nl.errno_of(policy(k, "eth2", 1)) == (0, None)
    assert acquire(k)["errno"] == E.ESRCH
    assert sad(nl) == [] and table(k, "eth2") == []
