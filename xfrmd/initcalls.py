"""The start-up of every kernel (``do_initcalls``): one init call per subsystem, in order.

This module is the one place that names the subsystems, as the kernel's link order does;
nothing below it imports a driver. Each init call fills tables the kernel owns (protocol
families, notifier chains with their priorities, link kinds, service ops, virtual files,
ioctls, driver state); see docs/architecture.md. Order matters where tables are ordered:
the netdevice notifier chain runs its callbacks of equal priority in registration order,
and the first registered virtual-file pattern that matches a path wins."""
from __future__ import annotations

import bonding
from devices import drivers as device_drivers

from . import datapath, genl, inet, rtnl, services, xfrm

INITCALLS = (
    xfrm.init,          # xfrm_init: NETLINK_XFRM, the SAD/SPD per namespace, xfrm_dev notifier
    rtnl.init,          # rtnetlink_init, devinet/ipv6 address and FIB notifiers, procfs
    genl.init,          # genl_init: nlctrl and ethtool families
    device_drivers.init,    # drivers: netdevsim, mlx5-like, Airoha SOE, dummy/veth link kinds
    bonding.init,       # bonding_init: the bond link kind, its notifier and offload models
    datapath.init,      # the emulated ESP data path: xmit, MIB files
    inet.init,          # inet_init: the sysctls programs' sockets obey (ping_group_range)
    services.init,      # the core service ops (netns, clock, files, ioctls, faults)
)
