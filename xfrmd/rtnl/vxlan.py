"""VXLAN devices (drivers/net/vxlan/vxlan_core.c, link kind ``vxlan``) as a control plane
sees them: ``ip link add NAME type vxlan id VNI [local A] [group|remote A] [dev D]
[dstport P] …`` validated as ``vxlan_validate`` / ``vxlan_config_validate`` do (with their
extack), the device ``vxlan_setup`` makes (Ethernet, random MAC, no queue, MTU 1500 or the
lower device's less the headroom), ``vxlan_fill_info``'s attributes in its order so that
``ip -d link show`` prints ``vxlan id …``, and the device's own forwarding database
(``vxlan_fdb_*``: ``bridge fdb add|del|get MAC dev NAME dst IP self``). Nothing is
encapsulated: no packet goes through a VXLAN device here. ``ip link set NAME type vxlan …``
changes what ``vxlan_changelink`` lets change."""
from __future__ import annotations

import dataclasses
import errno as E
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devices.netdev import NetDevice
from netlink_codec.netlink import RawAttr, kernel_attrs, nla, nla_u32

from ..errors import KernelError
from .link import RtnlLinkOps

if TYPE_CHECKING:
    from ..kernel import NetNamespace
    from ..netlink.core import Request

(IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_TTL,
 IFLA_VXLAN_TOS, IFLA_VXLAN_LEARNING, IFLA_VXLAN_AGEING, IFLA_VXLAN_LIMIT,
 IFLA_VXLAN_PORT_RANGE, IFLA_VXLAN_PROXY, IFLA_VXLAN_RSC, IFLA_VXLAN_L2MISS,
 IFLA_VXLAN_L3MISS, IFLA_VXLAN_PORT, IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6,
 IFLA_VXLAN_UDP_CSUM, IFLA_VXLAN_UDP_ZERO_CSUM6_TX, IFLA_VXLAN_UDP_ZERO_CSUM6_RX,
 IFLA_VXLAN_REMCSUM_TX, IFLA_VXLAN_REMCSUM_RX, IFLA_VXLAN_GBP, IFLA_VXLAN_REMCSUM_NOPARTIAL,
 IFLA_VXLAN_COLLECT_METADATA, IFLA_VXLAN_LABEL, IFLA_VXLAN_GPE, IFLA_VXLAN_TTL_INHERIT,
 IFLA_VXLAN_DF, IFLA_VXLAN_VNIFILTER, IFLA_VXLAN_LOCALBYPASS, IFLA_VXLAN_LABEL_POLICY,
 IFLA_VXLAN_RESERVED_BITS) = range(1, 34)
VXLAN_N_VID = 1 << 24
VXLAN_PORT = 8472                  # the module's vxlan_port default (IANA's 4789 is ip's)
FDB_AGE_DEFAULT = 300
VXLAN_HEADROOM, VXLAN6_HEADROOM = 50, 70
ETH_MIN_MTU, ETH_MAX_MTU = 68, 0xFFFF
# the u8 booleans of the configuration, in vxlan_fill_info's order, with their defaults
# for a new device (learning and local bypass are on; UDP_CSUM is "not zero-checksum")
BOOLS = ((IFLA_VXLAN_LEARNING, 1), (IFLA_VXLAN_PROXY, 0), (IFLA_VXLAN_RSC, 0),
         (IFLA_VXLAN_L2MISS, 0), (IFLA_VXLAN_L3MISS, 0), (IFLA_VXLAN_COLLECT_METADATA, 0))
CSUMS = ((IFLA_VXLAN_UDP_CSUM, 1), (IFLA_VXLAN_UDP_ZERO_CSUM6_TX, 0),
         (IFLA_VXLAN_UDP_ZERO_CSUM6_RX, 0), (IFLA_VXLAN_REMCSUM_TX, 0),
         (IFLA_VXLAN_REMCSUM_RX, 0), (IFLA_VXLAN_LOCALBYPASS, 1))
RESERVED_BITS_DEFAULT = bytes.fromhex("f7ffffff000000ff")
UNMODELLED = {IFLA_VXLAN_GBP: "gbp", IFLA_VXLAN_GPE: "gpe", IFLA_VXLAN_VNIFILTER: "vnifilter",
              IFLA_VXLAN_REMCSUM_NOPARTIAL: "remcsum_nopartial"}


@dataclass
class VxlanFdb:
    """One entry of the device's own FDB (``struct vxlan_fdb`` with its one remote)."""
    mac: bytes
    dst: bytes                 # the remote's address (4 or 16 bytes)
    state: int
    flags: int = 0


@dataclass
class VxlanConfig:
    """``struct vxlan_config``: what the device was made with."""
    vni: int = 0
    remote: bytes = b""        # group / remote (4 or 16 bytes), b"" for none
    remote_ifindex: int = 0
    saddr: bytes = b""
    ttl: int = 0
    tos: int = 0
    df: int = 0
    label: int = 0
    label_policy: int = 0
    age_interval: int = FDB_AGE_DEFAULT
    addrmax: int = 0
    dst_port: int = VXLAN_PORT
    port_min: int = 0
    port_max: int = 0
    ttl_inherit: bool = False
    flags: dict[int, int] = field(default_factory=dict)
    reserved_bits: bytes = RESERVED_BITS_DEFAULT
    fdb: list[VxlanFdb] = field(default_factory=list)


def vxlan_setup(dev: NetDevice) -> None:
    """``vxlan_setup`` + ``vxlan_ether_setup``: an Ethernet device without a queue."""
    dev.min_mtu, dev.max_mtu = ETH_MIN_MTU, ETH_MAX_MTU
    dev.tso_max_size = 65536
    dev.priv = VxlanConfig()


def _u(v: bytes, n: int) -> int:
    if len(v) < n:
        raise KernelError(E.ERANGE, "Attribute failed policy validation")
    return int.from_bytes(v[:n], "little" if n == 4 else "big") if n != 1 else v[0]


def _data(buf: Any, data_ra: RawAttr | None) -> dict[int, bytes]:
    if data_ra is None:
        raise KernelError(E.EINVAL, "Required attributes not provided to perform the operation")
    return {ra.type & 0x3FFF: bytes(buf[ra.start:ra.end])
            for ra in kernel_attrs(buf, data_ra.start, data_ra.end)[0]}


def vxlan_validate(tb: dict[int, bytes]) -> None:
    """``vxlan_validate``: the VNI's range, the source port range, DF."""
    if IFLA_VXLAN_ID in tb:
        if struct.unpack_from("=I", tb[IFLA_VXLAN_ID].ljust(4, b"\0"))[0] >= VXLAN_N_VID:
            raise KernelError(E.ERANGE, "VXLAN ID must be lower than 16777216")
    if IFLA_VXLAN_PORT_RANGE in tb:
        lo, hi = struct.unpack_from("!HH", tb[IFLA_VXLAN_PORT_RANGE].ljust(4, b"\0"))
        if hi < lo:
            raise KernelError(E.EINVAL, "Invalid source port range")
    if IFLA_VXLAN_DF in tb and _u(tb[IFLA_VXLAN_DF], 1) > 2:
        raise KernelError(E.EINVAL, "Invalid DF attribute")


# the u8 flags a change may set (vxlan_nl2flag's changelink_supported), with their names
# for "cannot change … flag"
FLAG_NAMES = {IFLA_VXLAN_LEARNING: "LEARNING", IFLA_VXLAN_PROXY: "PROXY", IFLA_VXLAN_RSC: "RSC",
              IFLA_VXLAN_L2MISS: "L2MISS", IFLA_VXLAN_L3MISS: "L3MISS",
              IFLA_VXLAN_COLLECT_METADATA: "COLLECT_METADATA",
              IFLA_VXLAN_UDP_ZERO_CSUM6_TX: "UDP_ZERO_CSUM6_TX",
              IFLA_VXLAN_UDP_ZERO_CSUM6_RX: "UDP_ZERO_CSUM6_RX",
              IFLA_VXLAN_REMCSUM_TX: "REMCSUM_TX", IFLA_VXLAN_REMCSUM_RX: "REMCSUM_RX",
              IFLA_VXLAN_LOCALBYPASS: "LOCALBYPASS", IFLA_VXLAN_TTL_INHERIT: "TTL_INHERIT"}
CHANGEABLE_FLAGS = {IFLA_VXLAN_LEARNING, IFLA_VXLAN_LOCALBYPASS}


def vxlan_nl2conf(tb: dict[int, bytes], old: VxlanConfig | None) -> VxlanConfig:
    """``vxlan_nl2conf``: a new configuration (``old`` None) or a change of ``old``, which
    keeps what it does not name and refuses what cannot change (EOPNOTSUPP with the
    kernel's extack)."""
    change = old is not None
    if change and IFLA_VXLAN_GBP in tb:
        raise KernelError(E.EOPNOTSUPP, "vxlan: cannot change GBP flag")
    if change and IFLA_VXLAN_REMCSUM_NOPARTIAL in tb:
        raise KernelError(E.EOPNOTSUPP, "vxlan: cannot change REMCSUM_NOPARTIAL flag")
    if change and IFLA_VXLAN_GPE in tb:             # GPE takes its own port
        raise KernelError(E.EOPNOTSUPP, "Cannot change port")
    for t, name in UNMODELLED.items():
        if t in tb:
            raise KernelError(E.EOPNOTSUPP, f"xfrmd: VXLAN {name} is not modelled")
    c = dataclasses.replace(old, flags=dict(old.flags), fdb=old.fdb) if old is not None \
        else VxlanConfig(flags={t: d for t, d in BOOLS + CSUMS})
    if IFLA_VXLAN_ID in tb:
        vni = struct.unpack_from("=I", tb[IFLA_VXLAN_ID].ljust(4, b"\0"))[0]
        if change and vni != c.vni:
            raise KernelError(E.EOPNOTSUPP, "Cannot change VNI")
        c.vni = vni
    for t, ln, what in ((IFLA_VXLAN_GROUP, 4, "group"), (IFLA_VXLAN_GROUP6, 16, "group"),
                        (IFLA_VXLAN_LOCAL, 4, "local"), (IFLA_VXLAN_LOCAL6, 16, "local")):
        if t not in tb:
            continue
        cur = c.remote if what == "group" else c.saddr
        if change and (len(cur) or 4) != ln:
            raise KernelError(E.EOPNOTSUPP, f"New {what} address family does not match old"
                              + (" group" if what == "group" else ""))
        v = tb[t][:ln] if any(tb[t][:ln]) else b""
        if what == "group":
            c.remote = v
        else:
            c.saddr = v
    if IFLA_VXLAN_LINK in tb:
        c.remote_ifindex = _u(tb[IFLA_VXLAN_LINK], 4)
    if IFLA_VXLAN_TOS in tb:
        c.tos = _u(tb[IFLA_VXLAN_TOS], 1)
    if IFLA_VXLAN_TTL in tb:
        c.ttl = _u(tb[IFLA_VXLAN_TTL], 1)
    if IFLA_VXLAN_TTL_INHERIT in tb:
        if change:
            raise KernelError(E.EOPNOTSUPP, "vxlan: cannot change TTL_INHERIT flag")
        c.ttl_inherit = bool(_u(tb[IFLA_VXLAN_TTL_INHERIT], 1))
    if IFLA_VXLAN_LABEL in tb:
        c.label = int.from_bytes(tb[IFLA_VXLAN_LABEL][:4], "big") & 0xFFFFF
    if IFLA_VXLAN_DF in tb:
        c.df = _u(tb[IFLA_VXLAN_DF], 1)
    for t, _d in BOOLS + CSUMS:
        if t not in tb:
            continue
        if t == IFLA_VXLAN_UDP_CSUM:
            if change:
                raise KernelError(E.EOPNOTSUPP, "Cannot change UDP_CSUM flag")
        elif change and t not in CHANGEABLE_FLAGS:
            raise KernelError(E.EOPNOTSUPP, f"vxlan: cannot change {FLAG_NAMES[t]} flag")
        c.flags[t] = 1 if _u(tb[t], 1) else 0
    if IFLA_VXLAN_AGEING in tb:
        c.age_interval = _u(tb[IFLA_VXLAN_AGEING], 4)
    if IFLA_VXLAN_LIMIT in tb:
        if change:
            raise KernelError(E.EOPNOTSUPP, "Cannot change limit")
        c.addrmax = _u(tb[IFLA_VXLAN_LIMIT], 4)
    if IFLA_VXLAN_PORT_RANGE in tb:
        if change:
            raise KernelError(E.EOPNOTSUPP, "Cannot change port range")
        c.port_min, c.port_max = struct.unpack_from("!HH", tb[IFLA_VXLAN_PORT_RANGE])
    if IFLA_VXLAN_PORT in tb and len(tb[IFLA_VXLAN_PORT]) >= 2:
        if change:
            raise KernelError(E.EOPNOTSUPP, "Cannot change port")
        c.dst_port = int.from_bytes(tb[IFLA_VXLAN_PORT][:2], "big") or VXLAN_PORT
    if c.flags[IFLA_VXLAN_COLLECT_METADATA]:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: VXLAN external (collect_metadata) is not "
                          "modelled")
    return c


def vxlan_config_validate(ns: NetNamespace, dev: NetDevice, c: VxlanConfig) -> Any:
    """``vxlan_config_validate``: one address family, a lower device that exists, a VNI
    not taken on the same port and lower device; the lower device or None."""
    if c.remote and c.saddr and len(c.remote) != len(c.saddr):
        raise KernelError(E.EINVAL, "Local and remote address must be from the same family")
    if c.label and len(c.remote or c.saddr) != 16:
        raise KernelError(E.EINVAL, "Label attribute only applies to IPv6 VXLAN devices")
    lower = None
    if c.remote_ifindex:
        lower = ns.links.by_index(c.remote_ifindex)
        if lower is None:
            raise KernelError(E.ENODEV, "Invalid local interface, device not found")
    for d in ns.links:
        o = d.priv if d.kind == "vxlan" and d is not dev else None
        if isinstance(o, VxlanConfig) and o.vni == c.vni and o.dst_port == c.dst_port \
                and o.remote_ifindex == c.remote_ifindex:
            raise KernelError(E.EEXIST, "A VXLAN device with the specified VNI already exists")
    return lower


def vxlan_config_apply(dev: NetDevice, c: VxlanConfig, lower: Any, change: bool) -> None:
    """``vxlan_config_apply``: a new device's MTU leaves room for the headers on the lower
    device (max_mtu stays), whose TSO limits it takes (``netif_inherit_tso_max``)."""
    if lower is not None and not change:
        head = VXLAN6_HEADROOM if len(c.remote or c.saddr) == 16 else VXLAN_HEADROOM
        dev.mtu = max(lower.mtu - head, ETH_MIN_MTU)
        dev.tso_max_size = lower.tso_max_size
    dev.priv = c


def vxlan_newlink(ns: NetNamespace, dev: NetDevice, buf: Any, data_ra: RawAttr | None) -> None:
    tb = _data(buf, data_ra)
    vxlan_validate(tb)
    c = vxlan_nl2conf(tb, None)
    vxlan_config_apply(dev, c, vxlan_config_validate(ns, dev, c), False)


def vxlan_changelink(req: Request, dev: NetDevice, m: Any, data_ra: RawAttr) -> None:
    """``vxlan_changelink``: TTL, TOS, DF, label, learning, ageing, the group, local
    address and lower device of the same family can change; the rest is refused."""
    tb = _data(m.buf, data_ra)
    vxlan_validate(tb)
    c = vxlan_nl2conf(tb, dev.priv)
    vxlan_config_apply(dev, c, vxlan_config_validate(req.netns, dev, c), True)


def vxlan_fill_info(dev: NetDevice, cap_net_admin: bool = True) -> bytes:
    c: VxlanConfig = dev.priv
    body = nla_u32(IFLA_VXLAN_ID, c.vni)
    if c.remote:
        body += nla(IFLA_VXLAN_GROUP if len(c.remote) == 4 else IFLA_VXLAN_GROUP6, c.remote)
    if c.remote_ifindex:
        body += nla_u32(IFLA_VXLAN_LINK, c.remote_ifindex)
    if c.saddr:
        body += nla(IFLA_VXLAN_LOCAL if len(c.saddr) == 4 else IFLA_VXLAN_LOCAL6, c.saddr)
    body += (nla(IFLA_VXLAN_TTL, bytes([c.ttl])) + nla(IFLA_VXLAN_TTL_INHERIT,
                                                        bytes([c.ttl_inherit]))
             + nla(IFLA_VXLAN_TOS, bytes([c.tos])) + nla(IFLA_VXLAN_DF, bytes([c.df]))
             + nla(IFLA_VXLAN_LABEL, c.label.to_bytes(4, "big"))
             + nla_u32(IFLA_VXLAN_LABEL_POLICY, c.label_policy))
    for t, _ in BOOLS:
        body += nla(t, bytes([c.flags[t]]))
    body += (nla_u32(IFLA_VXLAN_AGEING, c.age_interval) + nla_u32(IFLA_VXLAN_LIMIT, c.addrmax)
             + nla(IFLA_VXLAN_PORT, c.dst_port.to_bytes(2, "big")))
    for t, _ in CSUMS:
        body += nla(t, bytes([c.flags[t]]))
    body += nla(IFLA_VXLAN_PORT_RANGE, struct.pack("!HH", c.port_min, c.port_max))
    return body + nla(IFLA_VXLAN_RESERVED_BITS, c.reserved_bits)


VXLAN_LINK_OPS = RtnlLinkOps(kind="vxlan", driver="vxlan", setup=vxlan_setup,
                             validate=vxlan_newlink, changelink=vxlan_changelink,
                             fill_info=vxlan_fill_info)


# -- the device's own forwarding database (vxlan_fdb_add / _delete / _get / _dump) --------

NDA_DST, NDA_LLADDR, NDA_CACHEINFO, NDA_PORT, NDA_VNI, NDA_IFINDEX = 1, 2, 3, 6, 7, 8
NUD_REACHABLE, NUD_PERMANENT = 0x02, 0x80
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTN_UNICAST = 1
NDMSG = struct.Struct("=BxxxiHBB")


def _fdb_remote(c: VxlanConfig, tb: dict[int, bytes]) -> bytes:
    """``vxlan_fdb_parse``: NDA_DST of the device's address family (4 or 16 bytes); a
    port, VNI or lower device other than the device's own is not modelled."""
    for t in (NDA_PORT, NDA_VNI, NDA_IFINDEX):
        if t in tb:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: VXLAN FDB entries with their own port, "
                              "VNI or device are not modelled")
    v = tb[NDA_DST]
    if len(v) not in (4, 16):
        raise KernelError(E.EAFNOSUPPORT)
    return v


def vxlan_fdb_add(dev: NetDevice, mac: bytes, state: int, ndm_flags: int,
                  tb: dict[int, bytes], nlflags: int) -> VxlanFdb:
    """``vxlan_fdb_add`` → ``vxlan_fdb_update``: a permanent or reachable entry with a
    remote (EINVAL otherwise); EEXIST under NLM_F_EXCL, ENOENT without NLM_F_CREATE, ENOSPC
    past the device's address limit; NLM_F_REPLACE changes the remote of a unicast entry."""
    c: VxlanConfig = dev.priv
    if not state & (NUD_PERMANENT | NUD_REACHABLE) or NDA_DST not in tb:
        raise KernelError(E.EINVAL)
    remote = _fdb_remote(c, tb)
    f = next((f for f in c.fdb if f.mac == mac), None)
    if f is not None:
        if nlflags & NLM_F_EXCL:
            raise KernelError(E.EEXIST)
        f.state = state
        f.flags = ndm_flags
        if nlflags & NLM_F_REPLACE:
            f.dst = remote
        elif f.dst != remote:
            raise KernelError(E.EOPNOTSUPP, "xfrmd: VXLAN FDB entries with several remotes "
                              "are not modelled")
        return f
    if not nlflags & NLM_F_CREATE:
        raise KernelError(E.ENOENT)
    if c.addrmax and len(c.fdb) >= c.addrmax:
        raise KernelError(E.ENOSPC)
    f = VxlanFdb(mac, remote, state, ndm_flags)
    c.fdb.insert(0, f)
    return f


def vxlan_fdb_delete(dev: NetDevice, mac: bytes, tb: dict[int, bytes]) -> VxlanFdb:
    """``vxlan_fdb_delete``: the entry of the address (and of the remote, when one is
    given), else ENOENT."""
    c: VxlanConfig = dev.priv
    remote = _fdb_remote(c, tb) if NDA_DST in tb else None
    f = next((f for f in c.fdb if f.mac == mac), None)
    if f is None or remote is not None and f.dst != remote:
        raise KernelError(E.ENOENT)
    c.fdb.remove(f)
    return f


def vxlan_fdb_find(dev: NetDevice, mac: bytes) -> VxlanFdb | None:
    c: VxlanConfig = dev.priv
    return next((f for f in c.fdb if f.mac == mac), None)


def vxlan_fdb_info(dev: NetDevice, f: VxlanFdb) -> bytes:
    """``vxlan_fdb_info``'s body: the entry's state and flags, NDA_LLADDR, NDA_DST (port,
    VNI and device are the device's own, so not written), the cache times."""
    body = NDMSG.pack(7, dev.ifindex, f.state, f.flags & 0xFF, RTN_UNICAST)
    return body + nla(NDA_LLADDR, f.mac) + nla(NDA_DST, f.dst) + nla(NDA_CACHEINFO, bytes(16))


def vxlan_fdb_entries(dev: NetDevice) -> list[VxlanFdb]:
    """The device's entries as ``vxlan_fdb_dump`` walks them (newest first)."""
    c: VxlanConfig = dev.priv
    return list(c.fdb)
