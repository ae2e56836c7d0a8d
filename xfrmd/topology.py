"""Topologies: which namespaces, devices, addresses and routes a kernel starts with.

A topology is a TOML file (format in docs/topology.md) or one of the built-in names:
``bare`` — a namespace exactly as ``ip netns add`` makes it (only ``lo``, down) — and
``default`` (docs/topology.md, also shipped as xfrmd/topologies/default.toml). ``load_topology``
returns a :class:`Topology` whose ``apply(kernel)`` builds it; a bad file raises ValueError
naming the line and the problem."""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from typing import TYPE_CHECKING, Any, Callable, Iterator, NoReturn, cast

from bonding.bond import bond_create
from bonding.lag.require import lag_require_words
from devices import registry
from devices.features import set_features
from devices.netdev import IFF_BROADCAST, IFF_NOARP, IFF_UP, NetDevice
from devices.xfrmdev import LAG_GUARANTEES

from . import kconfig
from .rtnl.addr import add_address
from .rtnl.fib import addrconf_dev_config, fib, fib_rebuild
from .rtnl.link import VETH_QUEUES, RtnlLinkOps

if TYPE_CHECKING:
    from .kernel import Kernel

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "topologies")
KINDS = ("loopback", "dummy", "veth", "bridge", "bond", "netdevsim", "mlx5", "airoha-soe")
# the probe of a kind the hardware table does not cover: the bond's bond_create takes a
# topology's mode, xmit_hash_policy, miimon and lag_model
_SETUP: dict[str, Callable[[NetDevice, dict[str, Any]], None]] = {"bond": bond_create}
DEVICE_KEYS = {"name", "kind", "nic", "mac", "up", "carrier", "mtu", "addresses", "master",
               "peer", "peer_netns", "mode", "xmit_hash_policy", "miimon", "lacp_rate", "ad_select",
               "lag_model", "lag_require", "capabilities", "esp_hw_offload",
               *registry.PERSONALITY_KEYS}


class Topology:
    def __init__(self, spec: dict[str, Any], text: str = "", source: str = ""):
        self.spec, self.text, self.source = spec, text, source
        self._validate()

    # -- errors name the line -----------------------------------------------------------
    def _line_of(self, needle: str) -> int | None:
        """The line of the first occurrence (a quoted value matches either quote style)."""
        alts = [needle]
        if needle.startswith('"') and needle.endswith('"'):
            alts.append("'" + needle[1:-1] + "'")
        for i, line in enumerate(self.text.splitlines(), 1):
            if any(a in line for a in alts):
                return i
        return None

    def _fail(self, problem: str, needle: str | None = None) -> NoReturn:
        line = self._line_of(needle) if needle else None
        where = f"{self.source}:{line}: " if line else (f"{self.source}: " if self.source else "")
        raise ValueError(f"{where}{problem}")

    def _validate(self) -> None:
        self.kconfig = self._validate_kernel()
        nss = self.spec.get("netns", [])
        if not isinstance(nss, list) or not nss:
            self._fail("a topology needs at least one [[netns]]")
        seen_ns = set()
        for ns in nss:
            name = ns.get("name", "default")
            if name in seen_ns:
                self._fail(f"namespace {name!r} is defined twice", f'"{name}"')
            seen_ns.add(name)
            names = {"lo"}
            for d in ns.get("device", []):
                n = d.get("name")
                if not n or len(n) > 15:
                    self._fail(f"device name {n!r} is not a valid interface name", f'"{n}"' if n else "[[netns.device]]")
                if n in names:
                    self._fail(f"device {n!r} is defined twice", f'"{n}"')
                names.add(n)
                unknown = set(d) - DEVICE_KEYS
                if unknown:
                    self._fail(f"device {n!r}: unknown key {sorted(unknown)[0]!r}", sorted(unknown)[0])
                if d.get("kind") not in KINDS:
                    self._fail(f"device {n!r}: unknown kind {d.get('kind')!r} "
                               f"(one of {', '.join(KINDS)})", f'"{d.get("kind")}"')
                opt = kconfig.LINK_KINDS.get(d["kind"])
                if opt and not self.kconfig.enabled(opt):
                    self._fail(f"device {n!r}: kind {d['kind']} needs CONFIG_{opt}, which the "
                               "[kernel] table turns off", f'"{d["kind"]}"')
                if "lag_model" in d and d["lag_model"] not in ("off", "replicated", "shared"):
                    self._fail(f"device {n!r}: lag_model {d['lag_model']!r} is not one of off, "
                               "replicated, shared", f'"{d["lag_model"]}"')
                self._validate_personality(n, d)
                for a in d.get("addresses", []):
                    try:
                        ipaddress.ip_interface(a)
                    except ValueError:
                        self._fail(f"device {n!r}: bad address {a!r}", a)
            for d in ns.get("device", []):
                m = d.get("master")
                if m and m not in names:
                    self._fail(f"device {d['name']!r}: master {m!r} does not exist", f'"{m}"')
            for d in ns.get("device", []):
                if ("peer" in d or "peer_netns" in d) and d.get("kind") != "veth":
                    self._fail(f"device {d['name']!r}: only a veth has a peer", '"peer')
            for r in ns.get("route", []):
                if r.get("dev") and r["dev"] not in names:
                    self._fail(f"route: device {r['dev']!r} does not exist", f'"{r["dev"]}"')

        self._validate_veth_pairs(nss)

    def _validate_personality(self, n: str, d: dict[str, Any]) -> None:
        """A hardware port's personality keys (``capabilities``, ``lag_converted``,
        ``lag_guarantees``) and a bond's ``lag_require``: the value, its kind and type, or one
        line naming what is allowed."""
        if "capabilities" in d:
            why = registry.capabilities_problem(d["kind"], d["capabilities"])
            if why:
                self._fail(f"device {n!r}: {why}", "capabilities")
        for key in registry.PERSONALITY_KEYS:
            if key in d:
                why = registry.personality_problem(d["kind"], key, d[key])
                if why:
                    self._fail(f"device {n!r}: {why}", key)
        if "lag_require" in d:
            if d["kind"] != "bond":
                self._fail(f"device {n!r}: lag_require applies to kind bond only, not "
                           f"{d['kind']}", "lag_require")
            value = d["lag_require"]
            if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
                self._fail(f"device {n!r}: lag_require = {value!r} is not a list of "
                           f"{', '.join(LAG_GUARANTEES)}", "lag_require")
            try:
                lag_require_words(value)
            except ValueError as e:
                self._fail(f"device {n!r}: lag_require: {e}", "lag_require")

    def _validate_kernel(self) -> kconfig.KernelConfig:
        """The ``[kernel]`` table: ``CONFIG_NAME = true|false`` (or "y"/"m"/"n") for the
        options of :mod:`xfrmd.kconfig`; the rest stay on."""
        table = self.spec.get("kernel", {})
        if not isinstance(table, dict):
            self._fail("[kernel] must be a table of CONFIG_NAME = true|false", "kernel")
        cfg = kconfig.KernelConfig()
        values = {}
        for key, value in table.items():
            try:
                values[kconfig.normalise_name(key)] = kconfig.parse_value(value)
            except ValueError as e:
                self._fail(f"[kernel]: {e}", key)
        try:
            cfg.update(values)
        except ValueError as e:
            self._fail(f"[kernel]: {e}", "[kernel]")
        return cfg

    def _validate_veth_pairs(self, nss: list[dict[str, Any]]) -> None:
        """``peer = "NAME"`` (``peer_netns = "NS"`` for the other end in another namespace)
        names the other end, a veth defined there; each end has one peer."""
        veths = {(n.get("name", "default"), d["name"]): d for n in nss
                 for d in n.get("device", []) if d.get("kind") == "veth"}
        taken: dict[tuple[str, str], tuple[str, str]] = {}
        for (nsname, name), d in veths.items():
            if "peer" not in d:
                continue
            other = (d.get("peer_netns", nsname), d["peer"])
            if other not in veths:
                self._fail(f"device {name!r}: peer {other[1]!r} is not a veth of namespace "
                           f"{other[0]!r}", f'"{d["peer"]}"')
            if other == (nsname, name):
                self._fail(f"device {name!r}: a veth cannot be its own peer", f'"{d["peer"]}"')
            back = veths[other]
            if "peer" in back and (back.get("peer_netns", other[0]), back["peer"]) != (nsname, name):
                self._fail(f"device {other[1]!r}: its peer is not {name!r}", f'"{back["peer"]}"')
            for end in ((nsname, name), other):
                if taken.get(end, (nsname, name)) not in ((nsname, name), other):
                    self._fail(f"device {end[1]!r} is the peer of two veths", f'"{d["peer"]}"')
                taken[end] = (nsname, name)

    # -- building ------------------------------------------------------------------------
    def apply(self, kernel: Kernel) -> None:
        kernel.kconfig = self.kconfig.copy()               # before anything is built
        for nspec in self.spec.get("netns", []):
            ns = kernel.netns(nspec.get("name", "default"), create=True)
            links = ns.links
            lo = links.by_name("lo")
            if nspec.get("lo_up", True) and nspec.get("device") is not None:
                lo.flags |= IFF_UP
                lo.ever_up = True
                add_address(lo, "127.0.0.1", 8)
                add_address(lo, "::1", 128)
            devs = {}
            nsim_nics: dict[str, list[int]] = {}     # netdevsim NIC → [device id, next port]
            mlx5_nics: dict[str, list[int]] = {}     # mlx5 NIC → [next PCI function]
            for i, d in enumerate(nspec.get("device", [])):
                if d["kind"] == "loopback":
                    continue
                mac = _mac(d.get("mac"), len(kernel.namespaces), i)
                ops = cast("RtnlLinkOps | None", kernel.link_ops.get(d["kind"]))
                hw = registry.DRIVERS.get(d["kind"])
                driver = ops.driver if ops is not None else hw.name if hw is not None else ""
                dev = NetDevice(d["name"], d["kind"], mtu=d.get("mtu", 1500), address=mac,
                                driver=driver)
                dev.rtnl_link_ops = ops     # made as `ip link add` would make it
                if d["kind"] == "dummy":        # dummy_setup: NOARP, no MULTICAST
                    dev.flags = IFF_BROADCAST | IFF_NOARP
                    dev.min_mtu = dev.max_mtu = 0
                elif d["kind"] == "bond":       # alloc_netdev_mq(…, tx_queues = 16)
                    dev.num_tx_queues = dev.num_rx_queues = 16
                dev.nic = d.get("nic", "")
                dev.options = {k: v for k, v in d.items() if k not in ("name", "kind", "addresses")}
                links.register(dev)
                if d["kind"] == "bond" and "miimon" not in d and d.get("mode") in (
                        "802.3ad", "balance-tlb", "balance-alb"):
                    d = dict(d, miimon=100)         # bond_option_mode_set: miimon 0 → 100
                if d["kind"] == "mlx5":             # one PCI function per port of a NIC
                    nic = mlx5_nics.setdefault(d.get("nic", d["name"]), [0])
                    d = dict(d, port_no=nic[0])
                    nic[0] += 1
                if d["kind"] == "netdevsim":
                    nic = nsim_nics.setdefault(d.get("nic", d["name"]), [len(nsim_nics), 0])
                    d = dict(d, nsim_id=nic[0], nsim_port=nic[1])
                    nic[1] += 1
                _SETUP.get(d["kind"], registry.setup_device)(dev, d)
                devs[d["name"]] = dev
            for d in nspec.get("device", []):
                dev = devs.get(d["name"]) or links.by_name(d["name"])
                if d.get("up", True):
                    dev.flags |= IFF_UP
                    dev.ever_up = True
                dev.carrier = d.get("carrier", True)
                if d.get("kind") == "veth":
                    dev.num_tx_queues = dev.num_rx_queues = VETH_QUEUES
                    if d.get("peer") or any(o.get("peer") == d["name"] for o in _all_veths(
                            self.spec, nspec.get("name", "default"))):
                        dev.carrier = True
                        dev.set_carrier(False)      # veth_newlink; on once both ends are up
                for a in d.get("addresses", []):
                    iface = ipaddress.ip_interface(a)
                    add_address(dev, str(iface.ip), iface.network.prefixlen)
            for d in nspec.get("device", []):      # enslave once links are up
                if d.get("master"):
                    dev, master = devs[d["name"]], devs.get(d["master"])
                    if getattr(master, "bond", None) is not None:
                        # bond_enslave: a bond without a MAC of its own takes its first
                        # slave's; every slave takes the bond's (fail_over_mac none)
                        if not master.bond.slaves and not master.options.get("mac"):
                            master.address = dev.address
                        dev.perm_hwaddr = dev.address
                        dev.original_mtu = dev.mtu
                        dev.address = master.address
                        master.bond.enslave(dev)
                    else:
                        dev.master = master
            for d in nspec.get("device", []):      # a bond's opt-in, once it has its slaves
                if d["kind"] == "bond" and d.get("esp_hw_offload"):
                    set_features(devs[d["name"]], {"esp-hw-offload": True})   # ethtool -K
            ns.routes = []
            for r in nspec.get("route", []):
                dst = ipaddress.ip_network("0.0.0.0/0" if r.get("dst", "default") == "default"
                                           else r["dst"], strict=False)
                dev = links.by_name(r["dev"])
                ns.routes.append({"dst": dst, "dev": dev, "gw": r.get("via"), "src": None,
                                  "proto": 3, "scope": 0})
            fib_rebuild(ns)                       # the FIB from what was put in place
            for dev in links:                     # running devices: addrconf's link-local
                if dev.up and dev.carrier and dev.kind != "loopback":
                    addrconf_dev_config(ns, dev)
        self._pair_veths(kernel)

    def _pair_veths(self, kernel: Kernel) -> None:
        """Join the veth ends named by ``peer`` (across namespaces too); a pair whose ends
        are both up gets its carrier (veth_open) and addrconf."""
        for nspec in self.spec.get("netns", []):
            nsname = nspec.get("name", "default")
            for d in nspec.get("device", []):
                if d.get("kind") != "veth" or "peer" not in d:
                    continue
                dev = kernel.namespaces[nsname].links.by_name(d["name"])
                peer = kernel.namespaces[d.get("peer_netns", nsname)].links.by_name(d["peer"])
                dev.peer, peer.peer = peer, dev
                if dev.up and peer.up:
                    for end in (peer, dev):
                        end.set_carrier(True)
                        fib(end.netns).carrier_seen[end.ifindex] = True
                        addrconf_dev_config(end.netns, end)


def _all_veths(spec: dict[str, Any], nsname: str) -> Iterator[dict[str, Any]]:
    """The veth specs of every namespace that name a peer in ``nsname``."""
    for n in spec.get("netns", []):
        for d in n.get("device", []):
            if d.get("kind") == "veth" and "peer" in d and \
                    d.get("peer_netns", n.get("name", "default")) == nsname:
                yield d


def _mac(text: str | None, ns_no: int, i: int) -> bytes:
    if text:
        return bytes(int(x, 16) for x in text.split(":"))
    return bytes([0x02, 0x00, 0x00, ns_no & 0xFF, 0x00, (i + 1) & 0xFF])


def load_topology(name_or_path: str) -> Topology:
    if name_or_path == "bare":
        return Topology({"netns": [{"name": "default"}]}, source="bare")
    path = name_or_path
    if not os.path.exists(path):
        builtin = os.path.join(BUILTIN_DIR, f"{name_or_path}.toml")
        if not os.path.exists(builtin):
            raise ValueError(f"topology {name_or_path!r}: no such file or built-in topology "
                             "(built-in: default, bare)")
        path = builtin
    text = open(path).read()
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ValueError(f"{path}:{m.group(1) if m else '?'}: {e}") from None
    return Topology(spec, text, path)


def from_dict(spec: dict[str, Any]) -> Topology:
    return Topology(spec, source="<dict>")
