"""The writable attributes of /sys/class/net/DEV (net/core/net-sysfs.c): each store goes
through ``netdev_store`` — the text parsed by ``kstrtoul`` (base 0: ``0x1003``, ``010``; one
trailing newline; anything else EINVAL, beyond an unsigned long ERANGE) — then the
attribute's change function, whose errno the writer's ``write()`` returns. The files are
0644 because they have a store; what each prints is its ``*_show``."""
from __future__ import annotations

import errno as E
import re
from typing import Any, Callable

from devices.netdev import NET_NAME_UNKNOWN

from ..errors import KernelError
from . import net_sysfs_stats
from .ethtool import DUPLEX_FULL, get_link_ksettings
from .link import (dev_change_carrier, dev_change_flags, dev_change_tx_queue_len, dev_set_group,
                   dev_set_mtu)

ULONG_MAX = (1 << 64) - 1
S32_MAX = (1 << 31) - 1


def _s32(v: int) -> int:
    """An unsigned int printed with ``%d`` (fmt_dec)."""
    return v - (1 << 32) if v >= 1 << 31 else v


def kstrtoul(text: str) -> int:
    """``kstrtoul(buf, 0, …)``: decimal, 0x hex or 0 octal, one trailing newline allowed."""
    body = text[:-1] if text.endswith("\n") else text
    m = re.fullmatch(r"\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", body)
    if m is None:
        raise KernelError(E.EINVAL)
    digits = m.group(1)
    v = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) \
        if digits.startswith("0") else int(digits)
    if v > ULONG_MAX:
        raise KernelError(E.ERANGE)
    return v


def change_mtu(dev: Any, new: int) -> None:
    """``change_mtu`` → ``dev_set_mtu(dev, (int)new_mtu)``: its range checks, EINVAL."""
    dev_set_mtu(dev, new & 0xFFFFFFFF)


def change_flags(dev: Any, new: int) -> None:
    """``change_flags`` → ``dev_change_flags(dev, (unsigned int)new_flags)``."""
    dev_change_flags(dev, new & 0xFFFFFFFF)


def change_carrier(dev: Any, new: int) -> None:
    """``carrier_store``: EOPNOTSUPP without ``ndo_change_carrier`` (checked first), then
    ``change_carrier``: EINVAL while the device is down, then ``dev_change_carrier``."""
    if dev.kind != "dummy":
        raise KernelError(E.EOPNOTSUPP)
    if not dev.up:
        raise KernelError(E.EINVAL)
    dev_change_carrier(dev, bool(new))


def change_tx_queue_len(dev: Any, new: int) -> None:
    """``change_tx_queue_len``: ERANGE beyond an unsigned int, ``dev_change_tx_queue_len``."""
    dev_change_tx_queue_len(dev, new)


def change_proto_down(dev: Any, new: int) -> None:
    """``proto_down_store``: EOPNOTSUPP unless the device has ``IFF_CHANGE_PROTO_DOWN``
    (``dev_change_proto_down``). veth, dummy, bond, bridge and lo do not (6.18 answers
    EOPNOTSUPP for them); vxlan does on Linux, but protodown (its carrier and linkwatch
    messages) is not modelled: a vxlan refuses too, a known difference."""
    raise KernelError(E.EOPNOTSUPP)


def change_gro_flush_timeout(dev: Any, new: int) -> None:
    """``change_gro_flush_timeout``: any unsigned long, kept (nanoseconds)."""
    dev.gro_flush_timeout = new


def change_napi_defer_hard_irqs(dev: Any, new: int) -> None:
    """``change_napi_defer_hard_irqs``: ERANGE above S32_MAX."""
    if new > S32_MAX:
        raise KernelError(E.ERANGE)
    dev.napi_defer_hard_irqs = new


def change_group(dev: Any, new: int) -> None:
    """``change_group`` → ``dev_set_group(dev, (int)new_group)``."""
    dev_set_group(dev, new)


# attribute → (show, store)
ATTRS: dict[str, tuple[Callable[[Any], str], Callable[[Any, int], None]]] = {
    "mtu": (lambda d: f"{d.mtu}", change_mtu),
    "flags": (lambda d: f"{d.flags:#x}", change_flags),
    "carrier": (lambda d: f"{int(d.carrier)}", change_carrier),
    "tx_queue_len": (lambda d: f"{_s32(d.txqlen)}", change_tx_queue_len),
    "proto_down": (lambda d: "0", change_proto_down),
    "gro_flush_timeout": (lambda d: f"{d.gro_flush_timeout}", change_gro_flush_timeout),
    "napi_defer_hard_irqs": (lambda d: f"{d.napi_defer_hard_irqs}", change_napi_defer_hard_irqs),
    "netdev_group": (lambda d: f"{_s32(d.group)}", change_group),
}


def _iflink(dev: Any) -> int:
    """``dev_get_iflink``: ``ndo_get_iflink`` (a veth's peer), else the device's own index."""
    ops = dev.rtnl_link_ops
    get = getattr(ops, "get_iflink", None)
    link = get(dev) if get is not None else None
    return dev.ifindex if link is None else int(link)


def _running_only(value: Callable[[Any], str]) -> Callable[[Any], str]:
    """``dormant_show``/``testing_show``: EINVAL while the device is not running."""
    def show(dev: Any) -> str:
        if not dev.up:
            raise OSError(E.EINVAL, "not running")
        return value(dev)
    return show


def _addr_assign_type(dev: Any) -> str:
    """NET_ADDR_PERM 0, NET_ADDR_RANDOM 1 (eth_hw_addr_random), NET_ADDR_SET 3
    (dev_set_mac_address, an address given at creation)."""
    return "3" if dev.mac_set else "1" if dev.addr_random else "0"


def _name_assign_type(dev: Any) -> str:
    """``name_assign_type_show``: EINVAL for NET_NAME_UNKNOWN."""
    if dev.name_assign_type == NET_NAME_UNKNOWN:
        raise OSError(E.EINVAL, "name assign type unknown")
    return f"{dev.name_assign_type}"


def _link_ksettings(dev: Any) -> tuple[int, int, int]:
    """``speed_show``/``duplex_show``: EINVAL unless the device is running and its driver's
    ``get_link_ksettings`` answers (``__ethtool_get_link_ksettings``: lo, dummy have none)."""
    ks = get_link_ksettings(dev) if dev.up else None
    if ks is None:
        raise OSError(E.EINVAL, "no link settings")
    return ks


def _speed(dev: Any) -> str:
    speed = _link_ksettings(dev)[1]
    return f"{_s32(speed)}"                 # %d: SPEED_UNKNOWN is -1


def _duplex(dev: Any) -> str:
    duplex = _link_ksettings(dev)[2]
    return "full" if duplex == DUPLEX_FULL else "half" if duplex == 0 else "unknown"


# read-only attributes (0444): attribute → show
SHOW: dict[str, Callable[[Any], str]] = {
    "carrier_changes": lambda d: f"{d.carrier_changes}",
    "carrier_up_count": lambda d: f"{d.carrier_up_count}",
    "carrier_down_count": lambda d: f"{d.carrier_down_count}",
    "iflink": lambda d: f"{_iflink(d)}",
    "addr_len": lambda d: f"{len(d.address)}",
    "broadcast": lambda d: ":".join(f"{b:02x}" for b in d.broadcast),
    "addr_assign_type": _addr_assign_type,
    "dev_id": lambda d: "0x0",
    "dev_port": lambda d: "0",
    "link_mode": lambda d: "0",
    "dormant": _running_only(lambda d: "0"),
    "testing": _running_only(lambda d: "0"),
    "name_assign_type": _name_assign_type,
    "speed": _speed,
    "duplex": _duplex,
}


def _dev(ns: Any, path: str, table: dict[str, Any]) -> Any:
    parts = path.split("/")          # /sys/class/net/DEV/ATTR
    dev = ns.links.by_name(parts[4]) if len(parts) == 6 else None
    if dev is None or parts[5] not in table:
        raise FileNotFoundError(path)
    return dev


def show(kernel: Any, ns: Any, path: str) -> str:
    dev = _dev(ns, path, ATTRS)
    return ATTRS[path.split("/")[5]][0](dev) + "\n"


def show_ro(kernel: Any, ns: Any, path: str) -> str:
    dev = _dev(ns, path, SHOW)
    return SHOW[path.split("/")[5]](dev) + "\n"


def store(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    """``netdev_store``: the errno of the parse or of the change, None when it took."""
    dev = _dev(ns, path, ATTRS)
    if not data:
        return None                  # kernfs_fop_write_iter: nothing to store
    try:
        ATTRS[path.split("/")[5]][1](dev, kstrtoul(data))
    except KernelError as e:
        return e.errno
    return None


# kobject_synth_uevent: the actions a write to uevent may name
UEVENT_ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


# SET_NETDEV_DEVTYPE of the kinds that set one: br_type, bond_type, vlan_type, vxlan_type
DEVTYPES = {"bridge": "bridge", "bond": "bond", "vlan": "vlan", "vxlan": "vxlan"}


def uevent_show(kernel: Any, ns: Any, path: str) -> str:
    """``uevent_show``: DEVTYPE (``dev_uevent``, the device type's name) where the driver set
    a type, then ``netdev_uevent``: INTERFACE and IFINDEX."""
    dev = _dev(ns, path, {"uevent": None})
    devtype = DEVTYPES.get(dev.kind)
    return ((f"DEVTYPE={devtype}\n" if devtype else "")
            + f"INTERFACE={dev.name}\nIFINDEX={dev.ifindex}\n")


def uevent_store(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    """``uevent_store`` → ``kobject_synth_uevent``: a known action (no uevent is sent: there
    is no udev to hear it), EINVAL for anything else."""
    _dev(ns, path, {"uevent": None})
    action = (data[:-1] if data.endswith("\n") else data).split(" ")[0]
    return None if action in UEVENT_ACTIONS else E.EINVAL


VFS_FILES = (tuple((f"/sys/class/net/*/{attr}", show, store) for attr in ATTRS)
             + tuple((f"/sys/class/net/*/{attr}", show_ro, None) for attr in SHOW)
             + (("/sys/class/net/*/uevent", uevent_show, uevent_store),)
             + net_sysfs_stats.VFS_FILES)
VFS_DIRS = net_sysfs_stats.VFS_DIRS
