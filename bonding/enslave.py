"""Slaves joining and leaving a bond through rtnetlink (drivers/net/bonding/bond_main.c
``bond_enslave``, ``__bond_release_one``, ``bond_set_carrier``): the bond's
``ndo_add_slave`` / ``ndo_del_slave``, with the kernel's checks, extack and messages."""
from __future__ import annotations

import errno as E

from devices.netdev import IFF_MASTER, IFF_SLAVE, NetDevice, call_netdevice_notifiers
from xfrmd.errors import KernelError
from xfrmd.rtnl.link import dev_close, dev_open, rtmsg_ifinfo

from .bond import params


def bond_enslave(bond_dev: NetDevice, slave: NetDevice) -> None:
    """``bond_enslave``'s checks in the kernel's order, then: first slave gives the bond its
    MAC, the slave takes the bond's MTU and MAC, is opened, and joins the bond."""
    bond = bond_dev.bond
    if slave.flags & IFF_MASTER and slave.kind != "bond":
        raise KernelError(E.EPERM, "Device type (master device) cannot be enslaved")
    if slave.master is not None:
        raise KernelError(E.EBUSY, "Device is in use and cannot be enslaved")
    if slave is bond_dev:
        raise KernelError(E.EPERM, "Cannot enslave bond to itself.")
    if slave.up:
        raise KernelError(E.EPERM, "Device can not be enslaved while up")
    if bond.slaves and slave.type != bond_dev.type:
        raise KernelError(E.EINVAL, "Device type is different from other slaves")
    upper: NetDevice | None = bond_dev
    while upper is not None:        # netdev_upper_dev_link: no loops
        if upper is slave:
            raise KernelError(E.EBUSY)
        upper = upper.master
    if not bond.slaves and bond_dev.addr_random:
        bond_dev.address = slave.address
        bond_dev.addr_random = False
        rtmsg_ifinfo(bond_dev)
    slave.perm_hwaddr = slave.address
    slave.bond_queue_id = slave.bond_prio = 0   # a new struct slave (bond_alloc_slave)
    slave.original_mtu = slave.mtu
    if slave.mtu != bond_dev.mtu:
        slave.mtu = bond_dev.mtu
        rtmsg_ifinfo(slave)
    slave.address = bond_dev.address
    slave.flags |= IFF_SLAVE
    dev_open(slave)
    bond.enslave(slave)
    slave.master = bond_dev
    rtmsg_ifinfo(slave)             # bond_upper_dev_link: IFF_SLAVE
    call_netdevice_notifiers("NETDEV_CHANGEUPPER", slave, upper=bond_dev, linking=True)
    bond_set_carrier(bond_dev)


def bond_release(bond_dev: NetDevice, slave: NetDevice) -> None:
    """``__bond_release_one``: the slave leaves, gets its MTU and MAC back and is closed."""
    bond = bond_dev.bond
    bond.release(slave)
    slave.master = None
    slave.flags &= ~IFF_SLAVE
    rtmsg_ifinfo(slave)             # bond_upper_dev_unlink
    call_netdevice_notifiers("NETDEV_CHANGEUPPER", slave, upper=bond_dev, linking=False)
    dev_close(slave)
    perm = getattr(slave, "perm_hwaddr", None)
    if perm is not None:
        slave.address = perm
    mtu = getattr(slave, "original_mtu", None)
    if mtu:
        slave.mtu = mtu
    bond_set_carrier(bond_dev)


def bond_uninit(bond_dev: NetDevice) -> None:
    """``bond_uninit``: every slave is released before the bond goes."""
    for s in list(bond_dev.bond.slaves):
        bond_release(bond_dev, s)


def bond_set_carrier(bond_dev: NetDevice) -> None:
    """``bond_set_carrier``: on while enough slaves run (802.3ad: min_links)."""
    bond = bond_dev.bond
    usable = bond.usable_slaves()
    on = bool(usable) and bond_dev.up
    if bond.mode == "802.3ad":
        on = on and len(usable) >= max(1, params(bond).min_links)
    if bond_dev.set_carrier(on):
        rtmsg_ifinfo(bond_dev)
        call_netdevice_notifiers("NETDEV_CHANGE", bond_dev)   # linkwatch: addrconf, linkdown
