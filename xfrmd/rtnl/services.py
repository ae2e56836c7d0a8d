"""What the shim asks outside netlink about interfaces (docs/protocol.md service ops), the
interface ioctls (SIOCGIF*) and the files of /sys/class/net and /proc/net/if_inet6: the
tables at the bottom, registered by xfrmd/rtnl/__init__.py ``init``."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from typing import Any, Callable

from devices.netdev import call_netdevice_notifiers
from netlink_codec.netlink import NETLINK_ROUTE

from .. import ioctl
from ..errors import KernelError
from ..net_namespace import process_exit
from ..vfs import Lister, Reader, Writer
from . import ethtool  # noqa: F401  (SIOCETHTOOL, transitional: registers on import)
from . import net_sysfs
from .addr import IfAddr
from .link import (RTM_NEWLINK, br_port_carrier_check, dev_change_name, fill_ifinfo,
                   rtmsg_ifinfo, unregister_many)
from .netns import dev_change_net_namespace, get_net_ns_by_pid

IFNAMSIZ = 16
RTNLGRP_LINK = 1
Answer = dict[str, Any]
IoctlFn = Callable[[Any, Any, str, bytes], tuple[int, bytes]]


def _if_nametoindex(kernel: Any, ns: Any, request: Answer) -> Answer:
    dev = ns.links.by_name(request.get("name", ""))
    return {"errno": 0, "index": dev.ifindex if dev else 0}


def _if_indextoname(kernel: Any, ns: Any, request: Answer) -> Answer:
    dev = ns.links.by_index(int(request.get("index", 0)))
    return {"errno": 0, "name": dev.name} if dev else {"errno": E.ENXIO}


def _if_nameindex(kernel: Any, ns: Any, request: Answer) -> Answer:
    return {"errno": 0, "links": [[d.ifindex, d.name] for d in ns.links]}


def _getifaddrs(kernel: Any, ns: Any, request: Answer) -> Answer:
    out = []
    for d in ns.links:
        if not d.addresses:
            out.append({"name": d.name, "index": d.ifindex, "flags": d.dev_flags(), "family": 0})
        for a in d.addresses:           # an IPv4 address under its label (eth0:1)
            name = (a.label or d.name) if a.family == 2 else d.name
            out.append({"name": name, "index": d.ifindex, "flags": d.dev_flags(),
                        "family": a.family, "addr": a.address, "prefixlen": a.prefixlen})
    return {"errno": 0, "ifaddrs": out}


def _ifr_name(data: bytes) -> str:
    return data[:IFNAMSIZ].split(b"\0", 1)[0].decode(errors="replace")


def _dev(ns: Any, data: bytes) -> Any:
    """dev_ioctl: an alias label (eth0:1) names its device."""
    return ns.links.by_name(_ifr_name(data).split(":", 1)[0])


def _int_ioctl(value: Callable[[Any], int]) -> IoctlFn:
    """dev_ifsioc_locked: one int of the named device in ifr_ifru."""
    def handler(kernel: Any, ns: Any, ifname: str, data: bytes) -> tuple[int, bytes]:
        dev = _dev(ns, data)
        if dev is None:
            return E.ENODEV, b""
        return 0, data[:16] + struct.pack("=i", value(dev)) + data[20:]
    return handler


def _siocgifname(kernel: Any, ns: Any, ifname: str, data: bytes) -> tuple[int, bytes]:
    (index,) = struct.unpack_from("=i", data, 16)
    dev = ns.links.by_index(index)
    if dev is None:
        return E.ENODEV, b""
    return 0, dev.name.encode().ljust(16, b"\0") + data[16:]


def _siocgifflags(kernel: Any, ns: Any, ifname: str, data: bytes) -> tuple[int, bytes]:
    dev = _dev(ns, data)
    if dev is None:
        return E.ENODEV, b""
    return 0, data[:16] + struct.pack("=H", dev.dev_flags() & 0xFFFF) + data[18:]


def _siocgifhwaddr(kernel: Any, ns: Any, ifname: str, data: bytes) -> tuple[int, bytes]:
    dev = _dev(ns, data)
    if dev is None:
        return E.ENODEV, b""
    return 0, data[:16] + struct.pack("=H", dev.type) + dev.address.ljust(14, b"\0") + data[32:]


def _inet_ifa(ns: Any, data: bytes) -> tuple[int, IfAddr | None]:
    """``devinet_ioctl``'s lookup: the device, then its IPv4 address whose label is the
    name asked (the primary first); (errno, address)."""
    name = _ifr_name(data)
    dev = ns.links.by_name(name.split(":", 1)[0])
    if dev is None:
        return E.ENODEV, None
    for a in dev.addresses:
        if a.family == 2 and (a.label or dev.name) == name:
            return 0, a
    return E.EADDRNOTAVAIL, None


def _sockaddr_in(packed: bytes) -> bytes:
    return struct.pack("=H", 2) + b"\0\0" + packed + bytes(8)


def _inet_ioctl(field: Callable[[IfAddr], bytes]) -> IoctlFn:
    """``devinet_ioctl``: a sockaddr_in of the named IPv4 address in ifr_ifru."""
    def handler(kernel: Any, ns: Any, ifname: str, data: bytes) -> tuple[int, bytes]:
        err, a = _inet_ifa(ns, data)
        if a is None:
            return err, b""
        return 0, data[:16] + _sockaddr_in(field(a)) + data[32:]
    return handler


def _netmask(a: IfAddr) -> bytes:
    return ((0xFFFFFFFF << (32 - a.prefixlen)) & 0xFFFFFFFF).to_bytes(4, "big")


def _peer(a: IfAddr) -> bytes:
    return ipaddress.ip_address(a.prefix_base).packed   # ifa_address


def _siocgifmap(kernel: Any, ns: Any, ifname: str, data: bytes) -> tuple[int, bytes]:
    if _dev(ns, data) is None:
        return E.ENODEV, b""
    return 0, data[:16] + bytes(24) + data[40:]                # no I/O map, if_port 0


# net-sysfs.c operstates[], by IF_OPER_*
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")


def _sysfs(kernel: Any, ns: Any, path: str) -> str:
    parts = path.split("/")          # /sys/class/net/DEV/ATTR
    if len(parts) < 6:
        raise FileNotFoundError(path)
    dev = ns.links.by_name(parts[4])
    if dev is None:
        raise FileNotFoundError(path)
    attr = parts[5]
    values = {"ifindex": dev.ifindex,
              "address": ":".join(f"{b:02x}" for b in dev.address), "type": dev.type,
              "operstate": OPERSTATES[dev.operstate]}
    if attr == "ifalias":                  # ifalias_show: nothing while there is none
        alias = getattr(dev, "ifalias", "")
        return f"{alias}\n" if alias else ""
    if attr not in values:
        raise FileNotFoundError(path)
    return f"{values[attr]}\n"


IFALIASZ = 256


def _sysfs_ifalias_write(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    """``ifalias_store``: the text without one trailing newline (empty clears it; 256
    bytes or more is EINVAL, ``dev_set_alias``), then ``netdev_state_change``."""
    dev = ns.links.by_name(path.split("/")[4])
    if dev is None:
        return E.ENOENT
    alias = data[:-1] if data.endswith("\n") else data
    if len(alias.encode()) >= IFALIASZ:
        return E.EINVAL
    dev.ifalias = alias
    if dev.up:
        rtmsg_ifinfo(dev)
    return None


def _if_inet6(kernel: Any, ns: Any, path: str) -> str:
    lines = []
    for dev in ns.links:
        for a in dev.addresses:
            if a.family == 10:
                lines.append(f"{a.packed.hex()} {dev.ifindex:02x} {a.prefixlen:02x} "
                             f"{a.scope:02x} {a.flags:02x} {dev.name:>8}\n")
    return "".join(lines)


_SYSFS_ATTRS = ("address", "ifalias", "ifindex", "operstate", "type", "uevent", *net_sysfs.ATTRS,
                *net_sysfs.SHOW)


def _sysfs_dir(kernel: Any, ns: Any, path: str) -> list[tuple[str, str]]:
    """/sys/class/net: one entry per device; /sys/class/net/DEV: the attributes served."""
    parts = path.split("/")[1:]                    # sys class net [DEV]
    if len(parts) == 3:
        return [(dev.name, "link") for dev in ns.links]     # device_add_class_symlinks
    if len(parts) == 4 and ns.links.by_name(parts[3]) is not None:
        return [(a, "file") for a in _SYSFS_ATTRS] + [("statistics", "dir")]
    raise FileNotFoundError(path)


def _named_dev(ns: Any, request: Answer) -> Any:
    """The device a ``xfrmd ctl link DEV …`` request names; ENODEV without one."""
    dev = ns.links.by_name(request.get("dev", ""))
    if dev is None:
        raise KernelError(E.ENODEV, f"no device {request.get('dev')!r}")
    return dev


def _link_carrier(kernel: Any, ns: Any, request: Answer) -> Answer:
    """``xfrmd ctl link DEV carrier on|off``: what a cable does (netif_carrier_on/off)."""
    dev = _named_dev(ns, request)
    on = bool(request.get("on"))
    if dev.set_carrier(on):
        call_netdevice_notifiers("NETDEV_CHANGE", dev)
        kernel.multicast(ns, NETLINK_ROUTE, RTNLGRP_LINK, fill_ifinfo(dev, RTM_NEWLINK, 0, 0))
        br_port_carrier_check(dev)
    return {"errno": 0}


def _link_unplug(kernel: Any, ns: Any, request: Answer) -> Answer:
    """``xfrmd ctl link DEV unplug``: the port disappears as a hot-unplugged NIC does
    (unregister_netdevice: closed, released from its master, addresses gone, offloaded SAs
    flushed by NETDEV_UNREGISTER, RTM_DELLINK). The device is kept for ``replug``."""
    dev = _named_dev(ns, request)
    if dev.kind == "loopback":
        raise KernelError(E.EOPNOTSUPP, "xfrmd: lo cannot be unplugged")
    unregister_many([dev])
    ns.__dict__.setdefault("unplugged", {})[dev.name] = dev
    return {"errno": 0}


def _link_replug(kernel: Any, ns: Any, request: Answer) -> Answer:
    """``xfrmd ctl link DEV replug``: the unplugged port comes back as a newly probed device
    does: a new ifindex, down, no addresses, its driver and features as before
    (register_netdevice, RTM_NEWLINK)."""
    name = request.get("dev", "")
    dev = getattr(ns, "unplugged", {}).get(name)
    if dev is None:
        raise KernelError(E.ENODEV, f"no unplugged device {name!r}")
    if ns.links.by_name(name) is not None:
        raise KernelError(E.EEXIST, f"a device named {name!r} exists now")
    del ns.unplugged[name]          # unplug left it down, without master or addresses
    ns.links.register(dev)
    rtmsg_ifinfo(dev, RTM_NEWLINK, change=0xFFFFFFFF)
    return {"errno": 0, "ifindex": dev.ifindex}


def _links(kernel: Any, ns: Any, request: Answer) -> Answer:
    rows = []
    for d in ns.links:
        rows.append(f"{d.ifindex:>3} {d.name:<10} {d.kind:<11} {'up' if d.up else 'down':<5}"
                    f" carrier={'on' if d.carrier else 'off'}"
                    + (f" master={d.master.name}" if d.master is not None else ""))
    return {"errno": 0, "text": "\n".join(rows) + "\n"}


def _link_netns(kernel: Any, ns: Any, request: Answer) -> Answer:
    """``xfrmd ctl link DEV netns NS [name NEWNAME]``: ``dev_change_net_namespace``, as
    ``ip link set DEV netns NS`` would do (RTM_DELLINK here, RTM_NEWLINK there)."""
    dev = _named_dev(ns, request)
    target = kernel.namespaces.get(request.get("target", ""))
    if target is None:
        raise KernelError(E.ENOENT, f"no namespace {request.get('target')!r}")
    dev_change_net_namespace(dev, target, request.get("name"))    # KernelError: the errno
    if request.get("name"):                 # as do_setlink's IFLA_IFNAME after the move
        dev_change_name(dev, request["name"])
    return {"errno": 0, "ifindex": dev.ifindex, "name": dev.name}


# the service ops (docs/protocol.md), in the order they were always registered
def _netns_pid(kernel: Any, ns: Any, request: Answer) -> Answer:
    """The emulated namespace process PID is in, for /proc/PID/ns/net (``ip netns identify
    PID``, ``ip netns pids``): ``get_net_ns_by_pid``; "" when the server has not seen the
    process (the shim then reads its environment). ``start``: when that process started; a
    record of an earlier process with the same pid is forgotten."""
    pid, start = int(request["pid"]), int(request.get("start", 0))
    if start and kernel.pid_start.get(pid, start) != start:
        process_exit(kernel, pid)          # that process ended; this one reuses its pid
    found = get_net_ns_by_pid(kernel, pid)
    return {"errno": 0, "name": found.name if found is not None else ""}


SERVICES: dict[str, Callable[[Any, Any, Answer], Answer]] = {
    "netns_pid": _netns_pid,
    "if_nametoindex": _if_nametoindex,
    "if_indextoname": _if_indextoname,
    "if_nameindex": _if_nameindex,
    "getifaddrs": _getifaddrs,
    "link_carrier": _link_carrier,
    "link_unplug": _link_unplug,
    "link_replug": _link_replug,
    "links": _links,
    "link_netns": _link_netns,
}

IOCTLS: dict[int, IoctlFn] = {
    ioctl.SIOCGIFINDEX: _int_ioctl(lambda dev: dev.ifindex),
    ioctl.SIOCGIFNAME: _siocgifname,
    ioctl.SIOCGIFFLAGS: _siocgifflags,
    ioctl.SIOCGIFMTU: _int_ioctl(lambda dev: dev.mtu),
    ioctl.SIOCGIFHWADDR: _siocgifhwaddr,
    ioctl.SIOCGIFADDR: _inet_ioctl(lambda a: a.packed),
    ioctl.SIOCGIFNETMASK: _inet_ioctl(_netmask),
    ioctl.SIOCGIFBRDADDR: _inet_ioctl(lambda a: a.broadcast() or bytes(4)),
    ioctl.SIOCGIFDSTADDR: _inet_ioctl(_peer),
    ioctl.SIOCGIFTXQLEN: _int_ioctl(lambda dev: dev.txqlen),
    ioctl.SIOCGIFMETRIC: _int_ioctl(lambda dev: 0),          # ifr_metric: always 0
    ioctl.SIOCGIFMAP: _siocgifmap,
}

# the virtual files (pattern, read, write) and directories (pattern, lister)
VFS_FILES: tuple[tuple[str, Reader | None, Writer | None], ...] = (
    ("/sys/class/net/*/ifalias", _sysfs, _sysfs_ifalias_write),
    *net_sysfs.VFS_FILES,
    ("/sys/class/net/*", _sysfs, None),
    ("/proc/net/if_inet6", _if_inet6, None),
)
VFS_DIRS: tuple[tuple[str, Lister], ...] = (
    ("/sys/class/net", _sysfs_dir),
    ("/sys/class/net/*", _sysfs_dir),
    *net_sysfs.VFS_DIRS,
)
