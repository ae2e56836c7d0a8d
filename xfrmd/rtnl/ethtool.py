"""SIOCETHTOOL, the ioctl interface of net/ethtool/ioctl.c that ethtool (as fallback),
charon and pluto use: driver info, the feature string set and feature words, feature
changes, link state and the legacy offload getters. :func:`siocethtool` is registered
for SIOCETHTOOL by the genl init call (ethtool's netlink and ioctl sides together)."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING

from devices.features import FEATURE_NAMES, bond_compute_features, ethtool_sfeatures

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import Kernel, NetNamespace

ETHTOOL_GDRVINFO, ETHTOOL_GLINK, ETHTOOL_GSTRINGS = 0x03, 0x0A, 0x1B
ETHTOOL_GSSET_INFO, ETHTOOL_GFEATURES, ETHTOOL_SFEATURES = 0x37, 0x3A, 0x3B
ETH_SS_FEATURES = 4
FEATURE_WORDS = 2
# legacy getters → the feature(s) they report (ethtool_get_*), ETHTOOL_GUFO has no feature
LEGACY = {0x14: ("rx-checksum",),                                            # GRXCSUM
          0x16: ("tx-checksum-ipv4", "tx-checksum-ip-generic", "tx-checksum-ipv6"),  # GTXCSUM
          0x18: ("tx-scatter-gather",), 0x1E: ("tx-tcp-segmentation",),       # GSG, GTSO
          0x23: ("tx-generic-segmentation",), 0x2B: ("rx-gro",)}              # GGSO, GGRO
ETHTOOL_GFLAGS = 0x25
_FLAG_BITS = {"rx-lro": 1 << 15, "rx-vlan-hw-parse": 1 << 8, "tx-vlan-hw-insert": 1 << 7,
              "rx-ntuple-filter": 1 << 27, "rx-hashing": 1 << 28}


PORT_TP, PORT_DA, PORT_OTHER = 0x00, 0x05, 0xFF
DUPLEX_FULL, DUPLEX_UNKNOWN = 0x01, 0xFF
SPEED_UNKNOWN = 0xFFFFFFFF

# the drivers' get_link_ksettings, by kind: (port, speed, duplex); a bond sums its slaves'
_LINK_KSETTINGS = {"veth": (PORT_TP, 10000, DUPLEX_FULL), "mlx5": (PORT_DA, 100000, DUPLEX_FULL),
                   "airoha-soe": (PORT_TP, 10000, DUPLEX_FULL), "bond": (PORT_OTHER, 0, 0),
                   "bridge": (PORT_OTHER, SPEED_UNKNOWN, DUPLEX_UNKNOWN)}
# kinds whose driver has get_link (ethtool_op_get_link or an always-on one)
_HAS_GET_LINK = {"veth", "mlx5", "airoha-soe", "bond", "bridge", "loopback"}
# drivers that report an unknown speed and duplex without a link
_SPEED_NEEDS_LINK = {"bond", "mlx5", "airoha-soe"}


def _bond_speed(dev: "NetDevice") -> tuple[int, int]:
    """``bond_ethtool_get_link_ksettings``: the sum of the up slaves' speeds."""
    speed, duplex = 0, DUPLEX_UNKNOWN
    for s in dev.bond.usable_slaves():
        ks = _LINK_KSETTINGS.get(s.kind)
        if ks and s.kind != "bond" and ks[1] != SPEED_UNKNOWN:
            speed += ks[1]
            duplex = DUPLEX_FULL
    return (speed or SPEED_UNKNOWN), duplex


def link_speed(dev: "NetDevice") -> int | None:
    """The speed the driver's ``get_link_ksettings`` gives whatever the link state (what
    the bridge's ``port_cost`` reads), None without the op."""
    ks = _LINK_KSETTINGS.get(dev.kind)
    if ks is None:
        return None
    return _bond_speed(dev)[0] if dev.kind == "bond" else ks[1]


def get_link_ksettings(dev: "NetDevice") -> tuple[int, int, int] | None:
    """``__ethtool_get_link_ksettings``: (port, speed, duplex), None when the driver has no
    ``get_link_ksettings`` (EOPNOTSUPP)."""
    ks = _LINK_KSETTINGS.get(dev.kind)
    if ks is None:
        return None
    port, speed, duplex = ks
    if dev.kind == "bond":
        speed, duplex = _bond_speed(dev)
    if (not dev.up or not dev.carrier) and dev.kind in _SPEED_NEEDS_LINK:
        speed, duplex = SPEED_UNKNOWN, DUPLEX_UNKNOWN
    return port, speed, duplex


def get_link(dev: "NetDevice") -> int | None:
    """The driver's ``get_link``: 1 with a link, None when the driver has none."""
    if dev.kind not in _HAS_GET_LINK:
        return None
    return 1 if dev.kind == "loopback" else int(dev.up and dev.carrier)


def _drvinfo(dev: "NetDevice", buf: bytes) -> bytes:
    version = {"veth": "1.0", "bonding": "6.18.0", "bridge": "2.3"}.get(dev.driver, "6.18.0")
    # bond_ethtool_get_drvinfo: fw_version is BOND_ABI_VERSION (2)
    fw = {"mlx5_core": "16.35.2000 (MT_0000000008)", "bonding": "2"}.get(dev.driver, "")
    return (struct.pack("=I", ETHTOOL_GDRVINFO) + dev.driver.encode().ljust(32, b"\0")
            + version.encode().ljust(32, b"\0") + fw.encode().ljust(32, b"\0")
            + dev.bus_info.encode().ljust(32, b"\0") + bytes(32) + bytes(12) + bytes(20))


def siocethtool(kernel: "Kernel", ns: "NetNamespace", ifname: str,
                data: bytes) -> tuple[int, bytes]:
    """``dev_ethtool``: the command in the buffer ``ifr_data`` points at."""
    dev = ns.links.by_name(ifname)
    if dev is None:
        return E.ENODEV, b""
    (cmd,) = struct.unpack_from("=I", data)
    f = dev.features
    if cmd == ETHTOOL_GDRVINFO:
        return 0, _drvinfo(dev, data)
    if cmd == ETHTOOL_GLINK:
        return 0, struct.pack("=II", cmd, int(dev.up and dev.carrier))
    if cmd == ETHTOOL_GSSET_INFO:
        mask = struct.unpack_from("=Q", data, 8)[0]
        if mask & (1 << ETH_SS_FEATURES):
            return 0, struct.pack("=IIQI", cmd, 0, 1 << ETH_SS_FEATURES, len(FEATURE_NAMES))
        return 0, struct.pack("=IIQ", cmd, 0, 0) + data[16:]
    if cmd == ETHTOOL_GSTRINGS:
        _, sset, n = struct.unpack_from("=III", data)
        if sset != ETH_SS_FEATURES:
            return E.EOPNOTSUPP, b""
        # ethtool_get_strings fills the whole set whatever len the caller put in (charon
        # asks with len 0 after sizing its buffer from ETHTOOL_GSSET_INFO)
        names = b"".join(name.encode().ljust(32, b"\0") for name in FEATURE_NAMES)
        return 0, struct.pack("=III", cmd, sset, len(FEATURE_NAMES)) + names
    if f is None:
        return E.EOPNOTSUPP, b""
    if cmd == ETHTOOL_GFEATURES:
        (size,) = struct.unpack_from("=I", data, 4)
        if dev.bond is not None:
            bond_compute_features(dev)
        avail, req, act, never = f.masks()
        blocks = b"".join(struct.pack("=IIII", (avail >> 32 * i) & 0xFFFFFFFF,
                                      (req >> 32 * i) & 0xFFFFFFFF, (act >> 32 * i) & 0xFFFFFFFF,
                                      (never >> 32 * i) & 0xFFFFFFFF)
                          for i in range(min(size, FEATURE_WORDS)))
        return 0, struct.pack("=II", cmd, FEATURE_WORDS) + blocks + data[8 + len(blocks):]
    if cmd == ETHTOOL_SFEATURES:
        (size,) = struct.unpack_from("=I", data, 4)
        if size < FEATURE_WORDS:
            return E.EINVAL, b""
        valid = wanted = 0
        for i in range(FEATURE_WORDS):
            v, r = struct.unpack_from("=II", data, 8 + 8 * i)
            valid |= v << 32 * i
            wanted |= r << 32 * i
        if dev.bond is not None:
            bond_compute_features(dev)
        # ethtool_set_features: the same path as ETHTOOL_MSG_FEATURES_SET (devices.features);
        # its positive ETHTOOL_F_* result is not an error for ethtool, which reads back
        ret = ethtool_sfeatures(dev, valid, wanted)
        if ret < 0:
            return -ret, b""
        return 0, data
    if cmd in LEGACY:
        on = any(f.active(n) for n in LEGACY[cmd])
        return 0, struct.pack("=II", cmd, int(on))
    if cmd == ETHTOOL_GFLAGS:
        flags = sum(v for n, v in _FLAG_BITS.items() if f.active(n))
        return 0, struct.pack("=II", cmd, flags)
    return E.EOPNOTSUPP, b""
