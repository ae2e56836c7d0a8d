"""SIOCETHTOOL, the ioctl interface of net/ethtool/ioctl.c that ethtool (as fallback),
charon and pluto use: driver info, the feature string set and feature words, feature
changes, link state and the legacy offload getters."""
from __future__ import annotations

import errno as E
import struct

from devices.features import FEATURE_NAMES, bond_compute_features, ethtool_sfeatures

from .. import ioctl

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


def _dev(ns, ifname):
    return ns.links.by_name(ifname)


def _drvinfo(dev, buf: bytes) -> bytes:
    version = {"veth": "1.0", "bonding": "6.18.0", "bridge": "2.3"}.get(dev.driver, "6.18.0")
    # bond_ethtool_get_drvinfo: fw_version is BOND_ABI_VERSION (2)
    fw = {"mlx5_core": "16.35.2000 (MT_0000000008)", "bonding": "2"}.get(dev.driver, "")
    return (struct.pack("=I", ETHTOOL_GDRVINFO) + dev.driver.encode().ljust(32, b"\0")
            + version.encode().ljust(32, b"\0") + fw.encode().ljust(32, b"\0")
            + dev.bus_info.encode().ljust(32, b"\0") + bytes(32) + bytes(12) + bytes(20))


@ioctl.ioctl(ioctl.SIOCETHTOOL)
def _siocethtool(kernel, ns, ifname, data: bytes):
    dev = _dev(ns, ifname)
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
        if getattr(dev, "bond", None) is not None:
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
        if getattr(dev, "bond", None) is not None:
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
