"""Device files the shim serves: netdevsim's sysfs bus files (create/delete a simulated
device as the kernel selftests do) and its debugfs ``ipsec`` file; ``xfrmd ctl
show-offload``'s and ``offload-traffic``'s service ops. The devices init call registers
:data:`FILES`, :data:`DIRS` and :data:`SERVICES`."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any, Callable

from xfrmd import kconfig
from xfrmd.datapath import words as datapath_words
from xfrmd.errors import KernelError
from xfrmd.rtnl import link as rtnl_link
from xfrmd.xfrm import sadb

from . import registry
from .netdev import NetDevice
from .netdevsim import NsimIpsec
from .xfrmdev import xfrmdev_flag_names

if TYPE_CHECKING:
    from xfrmd.kernel import Kernel, NetNamespace

Request = dict[str, Any]


NsimBus = dict["NetNamespace", dict[int, list[NetDevice]]]


def _nsim_bus(kernel: "Kernel") -> NsimBus:
    """netdevsim's bus (``nsim_bus_dev_list``): the driver's state in
    ``kernel.drivers["netdevsim"]``, by the namespace whose sysfs made them (namespace →
    device id → its ports)."""
    bus = kernel.drivers.setdefault("netdevsim", {})
    assert isinstance(bus, dict)
    return bus


def _nsim_new_device(kernel: "Kernel", ns: "NetNamespace", path: str, data: str) -> int:
    """``echo "ID [PORTS [QUEUES]]" > /sys/bus/netdevsim/new_device``: ports eni<ID>np<N>."""
    if not kconfig.enabled(kernel, "NETDEVSIM"):
        return E.ENOENT                 # no netdevsim bus in a kernel built without it
    words = data.split()
    if not words or not words[0].isdigit():
        return E.EINVAL
    dev_id = int(words[0])
    ports = int(words[1]) if len(words) > 1 and words[1].isdigit() else 1
    existing = _nsim_bus(kernel).setdefault(ns, {})
    if dev_id in existing:
        return E.EEXIST
    made = []
    for p in range(ports):
        dev = NetDevice(f"eni{dev_id}np{p + 1}", "netdevsim", driver="netdevsim",
                        address=bytes([0x02, 0x00, 0x00, 0x00, dev_id & 0xFF, p + 1]))
        ns.links.register(dev)
        registry.setup_device(dev, {"nsim_id": dev_id, "nsim_port": p})
        made.append(dev)
        rtnl_link.rtmsg_ifinfo(dev, rtnl_link.RTM_NEWLINK, change=0xFFFFFFFF)  # register_netdevice
    existing[dev_id] = made
    return 0


def _nsim_del_device(kernel: "Kernel", ns: "NetNamespace", path: str, data: str) -> int:
    if not kconfig.enabled(kernel, "NETDEVSIM"):
        return E.ENOENT
    words = data.split()
    if not words or not words[0].isdigit():
        return E.EINVAL
    made = _nsim_bus(kernel).get(ns, {}).pop(int(words[0]), None)
    if made is None:
        return E.ENOENT
    # nsim_dev_port_del → unregister_netdevice: closed (NETDEV_DOWN flushes offloaded SAs),
    # released from a bond, addresses gone, RTM_DELLINK — wherever the port lives now
    live = [dev for dev in made if dev.netns is not None]
    if live:
        rtnl_link.unregister_many(live)
    return 0


def _nsim_ipsec(kernel: "Kernel", ns: "NetNamespace", path: str) -> str:
    """/sys/kernel/debug/netdevsim/netdevsim<ID>/ports/<P>/ipsec"""
    parts = path.split("/")
    try:
        dev_id = int(parts[5][len("netdevsim"):])
        port = int(parts[7])
    except (IndexError, ValueError):
        raise FileNotFoundError(path) from None
    dev = _nsim_debugfs_ports(kernel).get(dev_id, {}).get(port)
    if dev is None or not isinstance(dev.xfrmdev_ops, NsimIpsec):
        raise FileNotFoundError(path)
    return dev.xfrmdev_ops.debugfs()


def _nsim_ports(ns: "NetNamespace") -> dict[int, dict[int, NetDevice]]:
    """netdevsim device id → {port number: net device}"""
    out: dict[int, dict[int, NetDevice]] = {}
    for dev in ns.links:
        nsim = dev.nsim
        if nsim is not None:
            out.setdefault(nsim[0], {})[nsim[1]] = dev
    return out


def _nsim_debugfs_ports(kernel: "Kernel") -> dict[int, dict[int, NetDevice]]:
    """The ports debugfs shows: debugfs is one tree for the whole kernel, not per network
    namespace (``nsim_dev_port_debugfs_init`` makes ``netdevsim<ID>/ports/<P>`` under the
    device's directory wherever the port's netdev lives), so a program in the initial
    namespace reads the ``ipsec`` file of a port created in, or moved to, another one
    (bond_ipsec_offload.sh makes its ports with ``ip netns exec NS tee new_device`` and
    greps their files from outside)."""
    out: dict[int, dict[int, NetDevice]] = {}
    # the topology's ports (in the namespaces it names) and the bus's (made by new_device
    # in any namespace, also one without a name), wherever they live now
    devices = [d for ns in kernel.namespaces.values() for d in ns.links]
    devices += [d for by_id in _nsim_bus(kernel).values() for made in by_id.values()
                for d in made]
    for dev in devices:
        nsim = dev.nsim
        if dev.netns is not None and nsim is not None:
            out.setdefault(nsim[0], {})[nsim[1]] = dev
    return out


def _nsim_dirs(kernel: "Kernel", ns: "NetNamespace", path: str) -> list[tuple[str, str]]:
    """The directories of /sys/bus/netdevsim and debugfs netdevsim a selftest walks."""
    parts = path.split("/")[1:]
    if not kconfig.enabled(kernel, "NETDEVSIM"):
        raise FileNotFoundError(path)
    devs = _nsim_ports(ns)

    def dev_of(word: str) -> dict[int, NetDevice]:
        if not word.startswith("netdevsim") or not word[9:].isdigit() or int(word[9:]) not in devs:
            raise FileNotFoundError(path)
        return devs[int(word[9:])]

    if parts[:3] == ["sys", "bus", "netdevsim"]:
        rest = parts[3:]
        if not rest:
            return [("new_device", "file"), ("del_device", "file"), ("devices", "dir")]
        if rest == ["devices"]:
            return [(f"netdevsim{i}", "dir") for i in devs]
        if len(rest) == 2 and rest[0] == "devices":
            dev_of(rest[1])
            return [("net", "dir")]
        if len(rest) == 3 and rest[0] == "devices" and rest[2] == "net":
            return [(d.name, "dir") for d in dev_of(rest[1]).values()]
    elif parts[:4] == ["sys", "kernel", "debug", "netdevsim"]:
        devs = _nsim_debugfs_ports(kernel)
        rest = parts[4:]
        if not rest:
            return [(f"netdevsim{i}", "dir") for i in devs]
        ports = dev_of(rest[0])
        if len(rest) == 1:
            return [("ports", "dir")]
        if len(rest) == 2 and rest[1] == "ports":
            return [(str(p), "dir") for p in ports]
        if len(rest) == 3 and rest[1] == "ports" and rest[2].isdigit() and int(rest[2]) in ports:
            return [("ipsec", "file")]
    raise FileNotFoundError(path)


def _show_offload(kernel: "Kernel", ns: "NetNamespace", request: Request) -> dict[str, Any]:
    name = request.get("dev")
    out: dict[str, dict[str, Any]] = {}
    for dev in ns.links:
        if name and dev.name != name:
            continue
        ops = dev.xfrmdev_ops
        if ops is None:
            if name:
                return {"errno": 0, "devices": {dev.name: {"driver": dev.driver, "sas": [],
                                                           "offload": False}}}
            continue
        out[dev.name] = {"driver": ops.name, "flags": ops.flags,
                         "flag_names": xfrmdev_flag_names(ops.flags), "sas": ops.table(dev),
                         "esp-hw-offload": dev.features.active("esp-hw-offload")
                         if dev.features is not None else False}
        if hasattr(ops, "describe"):            # a bond: its model, slaves, eligibility
            out[dev.name].update(ops.describe(dev))
    if name and not out:
        return {"errno": E.ENODEV, "error": f"no device {name!r}"}
    return {"errno": 0, "devices": out}


def _offload_traffic(kernel: "Kernel", ns: "NetNamespace", request: Request) -> dict[str, Any]:
    """Emulated packets through the hardware SAs bound to DEV with SPI: the driver's
    counters grow (netdevsim's TX check, mlx5's flow counters read by update_stats)."""
    dev = ns.links.by_name(request.get("dev", ""))
    if dev is None:
        return {"errno": E.ENODEV, "error": f"no offload device {request.get('dev')!r}: no "
                f"device of that name in {ns.name} (xfrmd ctl links lists them)"}
    ops = dev.xfrmdev_ops
    if ops is None:
        return {"errno": E.ENODEV, "error": f"no offload device {dev.name!r}: {dev.name} has no "
                "IPsec offload (xfrmdev_ops); use a netdevsim, mlx5-like, airoha-soe port or "
                "a bond of them"}
    xnet = getattr(ns, "xfrm", None)
    spi = int(request.get("spi", 0))
    hits = [x for x in (sadb.sad(xnet).all.values() if xnet is not None else ())
            if x.xso is not None and x.xso.dev is dev and x.id.spi == spi]
    if not hits:
        return {"errno": E.ENOENT, "error": f"no SA with spi {spi:#x} offloaded to {dev.name}: "
                f"add it with `offload crypto|packet dev {dev.name} dir in|out` (`ip xfrm "
                "state` shows which SAs are offloaded where)"}
    # every SA with that SPI on the port sees the packets (a ping crosses the out and the in
    # SA of a pair); a driver that counts nothing for one of them is fine if another counts
    errors: list[KernelError] = []
    for x in hits:
        try:
            ops.hw_traffic(dev, x, int(request.get("packets", 1)), int(request.get("bytes", 0)))
        except KernelError as e:
            errors.append(e)
    if len(errors) == len(hits):
        x = hits[0]
        msg = errors[0].msg or ""
        if "no usable slave" in msg or "not offloaded to a slave" in msg:
            msg += f": {datapath_words.hw_hint(msg, x, dev)}"
        return {"errno": errors[0].errno,
                "error": f"{msg} (SA {x.id.spi:#x} reqid {x.reqid} on {dev.name})"}
    return {"errno": 0}


# the devices init call registers these, in this order (the first matching pattern wins)
DIRS: tuple[tuple[str, Callable[..., list[tuple[str, str]]]], ...] = (
    ("/sys/bus/netdevsim", _nsim_dirs),
    ("/sys/bus/netdevsim/*", _nsim_dirs),
    ("/sys/kernel/debug/netdevsim", _nsim_dirs),
    ("/sys/kernel/debug/netdevsim/*", _nsim_dirs),
)
FILES: tuple[tuple[str, Callable[..., str] | None, Callable[..., int] | None], ...] = (
    ("/sys/bus/netdevsim/new_device", None, _nsim_new_device),
    ("/sys/bus/netdevsim/del_device", None, _nsim_del_device),
    ("/sys/kernel/debug/netdevsim/netdevsim*/ports/*/ipsec", _nsim_ipsec, None),
)
# files whose mode is not the usual 0444/0644/0200 (nsim_ipsec_init: debugfs_create_file
# ("ipsec", 0400, …))
MODES: dict[str, int] = {"/sys/kernel/debug/netdevsim/netdevsim*/ports/*/ipsec": 0o400}
SERVICES: dict[str, Callable[..., dict[str, Any]]] = {
    "show_offload": _show_offload,
    "offload_traffic": _offload_traffic,
}
