"""Where a network device's sysfs directory is, and the link to it in /sys/class/net
(drivers/base/core.c): ``device_add`` puts a device without a parent under
``/sys/devices/virtual/net/DEV`` (``get_device_parent``: ``virtual_device_parent``) and a
netdevsim port under its bus device, ``/sys/devices/netdevsimID/net/DEV``; then
``device_add_class_symlinks`` makes ``/sys/class/net/DEV`` a link to that directory. The
attributes are registered under /sys/class/net/DEV (net_sysfs.py, services.py): the real
directory reaches them through an alias.

Emulated hardware ports other than netdevsim's (mlx5-like, SOE) sit under
``/sys/devices/virtual/net`` as well, where Linux has a PCI or platform path: the shim serves
no part of /sys/devices outside the network devices' own directories (docs/protocol.md)."""
from __future__ import annotations

from typing import Any

CLASS_NET = "/sys/class/net"
VIRTUAL_NET = "/sys/devices/virtual/net"


def device_dir(dev: Any) -> str:
    """The device's directory under /sys/devices (``dev_set_name`` + ``get_device_parent``)."""
    if dev.nsim is not None:
        return f"/sys/devices/netdevsim{dev.nsim[0]}/net/{dev.name}"
    return f"{VIRTUAL_NET}/{dev.name}"


def _parts(path: str) -> list[str]:
    return path.split("/")[1:]


def class_link(kernel: Any, ns: Any, path: str) -> str:
    """``/sys/class/net/DEV`` → ``../../devices/…/DEV`` (sysfs_create_link from the class
    directory: the target relative to it)."""
    parts = _parts(path)                        # sys class net DEV
    dev = ns.links.by_name(parts[3]) if len(parts) == 4 else None
    if dev is None:
        raise FileNotFoundError(path)
    return "../.." + device_dir(dev)[len("/sys"):]


def device_alias(kernel: Any, ns: Any, path: str) -> str | None:
    """A path in a device's real directory → the same under /sys/class/net/DEV."""
    if not path.startswith("/sys/devices/"):
        return None
    for dev in ns.links:
        d = device_dir(dev)
        if path == d or path.startswith(d + "/"):
            return f"{CLASS_NET}/{dev.name}{path[len(d):]}"
    return None


def devices_dir(kernel: Any, ns: Any, path: str) -> list[tuple[str, str]]:
    """/sys/devices/virtual/net: the namespace's virtual devices (the class directory's
    entries are tagged by namespace: kobj_ns_type_operations); /sys/devices/netdevsimID and
    its net/: the bus device's ports."""
    parts = _parts(path)
    if path == VIRTUAL_NET:
        return [(dev.name, "dir") for dev in ns.links if dev.nsim is None]
    if len(parts) in (3, 4) and parts[2].startswith("netdevsim") and parts[2][9:].isdigit():
        ports = [dev for dev in ns.links
                 if dev.nsim is not None and dev.nsim[0] == int(parts[2][9:])]
        if ports and len(parts) == 3:
            return [("net", "dir")]
        if ports and parts[3] == "net":
            return [(dev.name, "dir") for dev in ports]
    raise FileNotFoundError(path)


VFS_LINKS = ((f"{CLASS_NET}/*", class_link),)
VFS_DIRS = ((VIRTUAL_NET, devices_dir), ("/sys/devices/netdevsim*", devices_dir))
