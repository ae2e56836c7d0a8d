"""The proposed ``xfrm_dev_state_lower_handle`` helper (RFC LAG offload patch 1/4): which
hardware handle a lower device uses for a state, own, through an upper's op, or via
real_dev, and the ``upper_priv`` back-reference cleared on free."""
from __future__ import annotations

from types import SimpleNamespace

from devices.xfrmdev import XfrmDevOps
from xfrmd.xfrm.offload import (XFRM_DEV_OFFLOAD_OUT, XFRM_DEV_OFFLOAD_PACKET, XfrmDevOffload,
                                xfrm_dev_state_free, xfrm_dev_state_lower_handle)


class Lower(XfrmDevOps):
    name = "lower"


class Upper(XfrmDevOps):
    """A bond keeping one handle per lower in ``xso.upper_priv``."""
    name = "upper"
    has_lower_handle = True

    def xdo_dev_state_lower_handle(self, dev, x, lower_dev) -> int:
        return x.xso.upper_priv.get(lower_dev.name, 0)


def dev(name, ops):
    return SimpleNamespace(name=name, xfrmdev_ops=ops)


def state(on, handle=0x80000001, real=None):
    x = SimpleNamespace(xso=XfrmDevOffload(on, XFRM_DEV_OFFLOAD_OUT, XFRM_DEV_OFFLOAD_PACKET))
    x.xso.offload_handle = handle
    if real is not None:
        x.xso.real_dev = real
    return x


def test_own_device_gets_the_offload_handle():
    eth = dev("eth0", Lower())
    assert xfrm_dev_state_lower_handle(state(eth), eth) == 0x80000001


def test_no_device_or_no_lower_is_zero():
    eth = dev("eth0", Lower())
    x = state(eth)
    assert xfrm_dev_state_lower_handle(x, None) == 0
    x.xso.dev = None
    assert xfrm_dev_state_lower_handle(x, eth) == 0


def test_upper_op_maps_each_lower():
    bond, a, b, c = dev("bond0", Upper()), dev("a", Lower()), dev("b", Lower()), dev("c", Lower())
    x = state(bond, handle=0)
    x.xso.upper_priv = {"a": 7, "b": 9}
    assert [xfrm_dev_state_lower_handle(x, d) for d in (a, b, c)] == [7, 9, 0]


def test_real_dev_without_upper_op_uses_the_offload_handle():
    """Upstream active-backup: the bond has no lower-handle op, the slave is real_dev."""
    bond, slave, other = dev("bond0", Lower()), dev("s", Lower()), dev("o", Lower())
    x = state(bond, handle=0x55, real=slave)
    assert xfrm_dev_state_lower_handle(x, slave) == 0x55
    assert xfrm_dev_state_lower_handle(x, other) == 0


def test_upper_op_wins_over_real_dev():
    bond, slave = dev("bond0", Upper()), dev("s", Lower())
    x = state(bond, handle=0x55, real=slave)
    x.xso.upper_priv = {}
    assert xfrm_dev_state_lower_handle(x, slave) == 0


def test_free_clears_the_back_reference():
    bond = dev("bond0", Upper())
    x = state(bond)
    xso = x.xso
    xso.upper_priv = {"a": 1}
    xfrm_dev_state_free(x)
    assert x.xso is None and xso.upper_priv is None
