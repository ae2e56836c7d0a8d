"""The ethtool generic-netlink family (net/ethtool/netlink.c and its per-message files):
STRSET_GET (the features string set), FEATURES_GET/SET and FEATURES_NTF on the "monitor"
group, LINKINFO/LINKMODES/LINKSTATE_GET for ``ethtool DEV``. Every operation of the 6.18
family is advertised with the kernel's flags (so ethtool 6.1 never falls back to the
ioctl by itself); the ones not modelled answer EOPNOTSUPP with an ``xfrmd:`` message, and
those the emulated drivers lack as the kernel does for such a driver (plain EOPNOTSUPP).

Feature changes go through :func:`devices.features.ethnl_set_features`, the same core as
ETHTOOL_SFEATURES (``xfrmd/rtnl/ethtool.py``), so both paths reach the drivers'
``ndo_set_features`` alike."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any, Iterator

from devices import features as F
from netlink_codec import ethtool as T
from netlink_codec.genl import (ETHTOOL_GENL_ID, GENL_CMD_CAP_DUMP, GENL_UNS_ADMIN_PERM,
                                genl_payload)
from netlink_codec.netlink import (NETLINK_GENERIC, NLA_F_NESTED, NLM_F_MULTI, RawAttr,
                                   encode_msg, kernel_attrs, nla, nla_nested, nla_string, nla_u8,
                                   nla_u32)

from ..errors import KernelError
from ..netlink.core import Reply
from ..rtnl.ethtool import get_link, get_link_ksettings
from .core import Genetlink, GenlFamily, GenlOp, GenlRequest

if TYPE_CHECKING:
    from devices.netdev import NetDevice

    from ..kernel import Kernel

MONITOR_GROUP = 6            # ETHNL_MCGRP_MONITOR's id on the 6.18 kernel here
# CTRL_ATTR_OP_FLAGS of ops 1..50 as the 6.18 kernel reports them (0x0e: a GET with do and
# dump, 0x1a: a SET or ACT needing CAP_NET_ADMIN, 0x1e: WOL_GET and MODULE_EEPROM_GET, which
# need CAP_NET_ADMIN too)
_OP_FLAGS = [14, 14, 26, 14, 26, 14, 14, 26, 30, 26, 14, 26, 14, 26, 14, 26, 14, 26, 14, 26,
             14, 26, 14, 26, 14, 26, 26, 14, 14, 26, 30, 14, 14, 14, 26, 14, 26, 14, 14, 26,
             14, 14, 26, 26, 14, 14, 26, 26, 26, 26]
# GETs whose ethtool_ops callbacks none of the emulated drivers has: the kernel's answer
_DRIVER_LACKS = {T.MSG["WOL_GET"], T.MSG["DEBUG_GET"]}
ALTIFNAMSIZ = 128
LINK_MODE_NBITS = 121        # __ETHTOOL_LINK_MODE_MASK_NBITS (6.18)


def _err(errno: int, msg: str | None = None, info: GenlRequest | None = None,
         ra: RawAttr | None = None) -> KernelError:
    """The error of a request, with NLMSGERR_ATTR_OFFS of ``ra`` when given."""
    if ra is not None and info is not None:
        return KernelError(errno, msg, offset=info.offset_of(ra))
    return KernelError(errno, msg)


def reply_header(dev: "NetDevice") -> bytes:
    """``ethnl_fill_reply_header``."""
    return nla_nested(1, nla_u32(T.ETHTOOL_A_HEADER_DEV_INDEX, dev.ifindex),
                      nla_string(T.ETHTOOL_A_HEADER_DEV_NAME, dev.name))


def _nested(info: GenlRequest, ra: RawAttr) -> dict[int, RawAttr]:
    raws, _ = kernel_attrs(info.req.buf, ra.start, ra.end)
    return {r.type: r for r in raws}


ETHTOOL_A_HEADER_MAX = 4     # DEV_INDEX, DEV_NAME, FLAGS, PHY_INDEX


def parse_header(info: GenlRequest, hdr_type: int, require_dev: bool, flag_mask: int = 3
                 ) -> tuple["NetDevice | None", int]:
    """``ethnl_parse_header_dev_get`` (with the header policy's checks): (dev, flags)."""
    buf = info.req.buf
    ra = info.attrs.get(hdr_type)
    if ra is None:
        if not require_dev:
            return None, 0
        raise _err(E.EINVAL, "request header missing")
    # genetlink's strict parse of the nest (NLA_POLICY_NESTED(ethnl_header_policy)):
    # the flag, known types only, nothing left over
    if not ra.flags & NLA_F_NESTED:
        raise _err(E.EINVAL, "NLA_F_NESTED is missing", info, ra)
    raws, leftover = kernel_attrs(buf, ra.start, ra.end)
    for r in raws:
        if r.type == 0 or r.type > ETHTOOL_A_HEADER_MAX:
            raise _err(E.EINVAL, "Unknown attribute type", info, r)
    if leftover:
        raise _err(E.EINVAL, "bytes leftover after parsing attributes")
    tb = {r.type: r for r in raws}
    flags = 0
    fl = tb.get(T.ETHTOOL_A_HEADER_FLAGS)
    if fl is not None:
        if fl.end - fl.start != 4:
            raise _err(E.EINVAL, "invalid attribute length", info, fl)
        (flags,) = struct.unpack_from("=I", buf, fl.start)
        if flags & ~flag_mask:
            raise _err(E.EINVAL, "reserved bit set", info, fl)
    name_ra = tb.get(T.ETHTOOL_A_HEADER_DEV_NAME)
    name = None
    if name_ra is not None:
        raw = bytes(buf[name_ra.start:name_ra.end])
        if b"\0" not in raw or raw.index(b"\0") > ALTIFNAMSIZ - 1:
            # NLA_NUL_STRING: no NUL within len + 1 bytes fails the policy (EINVAL)
            raise _err(E.EINVAL, "Attribute failed policy validation", info, name_ra)
        name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    links = info.req.netns.links
    dev = None
    idx_ra = tb.get(T.ETHTOOL_A_HEADER_DEV_INDEX)
    if idx_ra is not None:
        # ethnl_header_policy: an NLA_U32, validated strictly (genetlink's nested policy)
        if idx_ra.end - idx_ra.start != 4:
            raise _err(E.EINVAL, "invalid attribute length", info, idx_ra)
        (ifindex,) = struct.unpack_from("=I", buf, idx_ra.start)
        dev = links.by_index(ifindex)
        if dev is None:
            raise _err(E.ENODEV, "no device matches ifindex", info, idx_ra)
        if name is not None and dev.name != name[:15]:
            raise _err(E.ENODEV, "ifindex and name do not match", info, ra)
    elif name is not None:
        dev = links.by_name(name)
        if dev is None:
            raise _err(E.ENODEV, "no device matches name", info, name_ra)
    elif require_dev:
        raise _err(E.EINVAL, "neither ifindex nor name specified", info, ra)
    return dev, flags


def parse_bitset(info: GenlRequest, ra: RawAttr, nbits: int, names: list[str]) -> tuple[int, int]:
    """``ethnl_parse_bitset``: the (value, mask) that a compact or verbose, list or
    value/mask bitset applies."""
    buf = info.req.buf
    tb = _nested(info, ra)
    no_mask = T.ETHTOOL_A_BITSET_NOMASK in tb
    full = (1 << nbits) - 1
    bits = tb.get(T.ETHTOOL_A_BITSET_BITS)
    if bits is None:
        size_ra, val_ra = tb.get(T.ETHTOOL_A_BITSET_SIZE), tb.get(T.ETHTOOL_A_BITSET_VALUE)
        mask_ra = tb.get(T.ETHTOOL_A_BITSET_MASK)
        if no_mask and mask_ra is not None:
            raise _err(E.EINVAL, "mask not allowed in list bitset", info, mask_ra)
        if size_ra is None:
            raise _err(E.EINVAL, "missing size in compact bitset", info, ra)
        if val_ra is None:
            raise _err(E.EINVAL, "missing value in compact bitset", info, ra)
        if not no_mask and mask_ra is None:
            raise _err(E.EINVAL, "missing mask in compact nonlist bitset", info, ra)
        if size_ra.end - size_ra.start != 4:          # bitset_policy: NLA_U32, strict
            raise _err(E.EINVAL, "invalid attribute length", info, size_ra)
        (size,) = struct.unpack_from("=I", buf, size_ra.start)
        nbytes = (size + 31) // 32 * 4
        if val_ra.end - val_ra.start != nbytes:
            raise _err(E.EINVAL, "bitset value length does not match size", info, val_ra)
        if mask_ra is not None and mask_ra.end - mask_ra.start != nbytes:
            raise _err(E.EINVAL, "bitset mask length does not match size", info, mask_ra)
        value = T.words_to_int(bytes(buf[val_ra.start:val_ra.end]))
        # without a mask (the list form) the value is the mask too
        mask = value if mask_ra is None else T.words_to_int(bytes(buf[mask_ra.start:mask_ra.end]))
        if size > nbits:
            if (value if no_mask else mask) >> nbits:
                raise _err(E.EINVAL, "cannot modify bits past kernel bitset size", info,
                           val_ra if no_mask else mask_ra)
        change = (1 << min(size, nbits)) - 1
        return value & change, (full if no_mask else mask & change)
    for which, t in (("value", T.ETHTOOL_A_BITSET_VALUE), ("mask", T.ETHTOOL_A_BITSET_MASK)):
        if t in tb:
            raise _err(E.EINVAL, f"{which} only allowed in compact bitset", info, tb[t])
    value, mask = 0, (full if no_mask else 0)
    raws, _ = kernel_attrs(buf, bits.start, bits.end)
    for bit_ra in raws:
        if bit_ra.type != T.ETHTOOL_A_BITSET_BITS_BIT:
            raise _err(E.EINVAL, "only ETHTOOL_A_BITSET_BITS_BIT allowed in ETHTOOL_A_BITSET_BITS",
                       info, bit_ra)
        bt = _nested(info, bit_ra)
        idx_ra, name_ra = bt.get(T.ETHTOOL_A_BITSET_BIT_INDEX), bt.get(T.ETHTOOL_A_BITSET_BIT_NAME)
        name = None
        if name_ra is not None:
            name = bytes(buf[name_ra.start:name_ra.end]).split(b"\0", 1)[0].decode("utf-8", "replace")
        if idx_ra is not None:
            if idx_ra.end - idx_ra.start != 4:        # bit_policy: NLA_U32, strict
                raise _err(E.EINVAL, "invalid attribute length", info, idx_ra)
            (idx,) = struct.unpack_from("=I", buf, idx_ra.start)
            if idx >= nbits:
                raise _err(E.EOPNOTSUPP, "bit index too high", info, idx_ra)
            if name is not None and names[idx] and not names[idx].startswith(name):
                raise _err(E.EINVAL, "bit index and name mismatch", info, bit_ra)
        elif name is not None:
            if name not in names or not name:
                raise _err(E.EOPNOTSUPP, "bit name not found", info, name_ra)
            idx = names.index(name)
        else:
            raise _err(E.EINVAL, "neither bit index nor name specified", info, bit_ra)
        if no_mask or T.ETHTOOL_A_BITSET_BIT_VALUE in bt:
            value |= 1 << idx
        if not no_mask:
            mask |= 1 << idx
    return value, mask


# -- message bodies -------------------------------------------------------------------------

def features_body(dev: "NetDevice", compact: bool) -> bytes:
    """``features_fill_reply``: HW as value/mask over every feature, then WANTED, ACTIVE and
    NOCHANGE as lists."""
    f = dev.features
    assert f is not None, dev
    names = F.FEATURE_NAMES
    n = F.FEATURE_COUNT
    return (T.put_bitset(T.ETHTOOL_A_FEATURES_HW, f.hw_mask, F.ALL_FEATURES, n, names, compact)
            + T.put_bitset(T.ETHTOOL_A_FEATURES_WANTED, f.wanted_mask, None, n, names, compact)
            + T.put_bitset(T.ETHTOOL_A_FEATURES_ACTIVE, f.active_mask, None, n, names, compact)
            + T.put_bitset(T.ETHTOOL_A_FEATURES_NOCHANGE, F.NEVER_CHANGE, None, n, names, compact))


def _sync(dev: "NetDevice") -> None:
    if dev.bond is not None:
        F.bond_compute_features(dev)


def _features(dev: "NetDevice", flags: int) -> bytes:
    if dev.features is None:
        raise _err(E.EOPNOTSUPP)
    _sync(dev)
    return features_body(dev, bool(flags & T.ETHTOOL_FLAG_COMPACT_BITSETS))


def _linkinfo(dev: "NetDevice", flags: int) -> bytes:
    """``linkinfo_fill_reply`` (``__ethtool_get_link_ksettings``)."""
    ks = get_link_ksettings(dev)
    if ks is None:
        raise _err(E.EOPNOTSUPP)
    return (nla_u8(T.ETHTOOL_A_LINKINFO_PORT, ks[0]) + nla_u8(T.ETHTOOL_A_LINKINFO_PHYADDR, 0)
            + nla_u8(T.ETHTOOL_A_LINKINFO_TP_MDIX, 0) + nla_u8(T.ETHTOOL_A_LINKINFO_TP_MDIX_CTRL, 0)
            + nla_u8(T.ETHTOOL_A_LINKINFO_TRANSCEIVER, 0))


def _linkmodes(dev: "NetDevice", flags: int) -> bytes:
    """``linkmodes_fill_reply``: no supported/advertised modes are modelled (an empty
    value/mask bitset, as a veth reports), speed and duplex of the driver."""
    ks = get_link_ksettings(dev)
    if ks is None:
        raise _err(E.EOPNOTSUPP)
    _, speed, duplex = ks
    compact = bool(flags & T.ETHTOOL_FLAG_COMPACT_BITSETS)
    return (nla_u8(T.ETHTOOL_A_LINKMODES_AUTONEG, 0)
            + T.put_bitset(T.ETHTOOL_A_LINKMODES_OURS, 0, 0, LINK_MODE_NBITS, None, compact)
            + nla_u32(T.ETHTOOL_A_LINKMODES_SPEED, speed)
            + nla_u8(T.ETHTOOL_A_LINKMODES_DUPLEX, duplex)
            + nla_u8(T.ETHTOOL_A_LINKMODES_RATE_MATCHING, 0))


def _linkstate(dev: "NetDevice", flags: int) -> bytes:
    """``linkstate_fill_reply``: LINK only where the driver has get_link."""
    link = get_link(dev)
    return b"" if link is None else nla_u8(T.ETHTOOL_A_LINKSTATE_LINK, link)


_GETTERS = {T.MSG["FEATURES_GET"]: _features, T.MSG["LINKINFO_GET"]: _linkinfo,
            T.MSG["LINKMODES_GET"]: _linkmodes, T.MSG["LINKSTATE_GET"]: _linkstate}


def _strset(info: GenlRequest, dev: "NetDevice | None", flags: int) -> bytes:
    """``strset_fill_reply`` for the sets that are modelled: ETH_SS_FEATURES (global)."""
    req = info.attrs.get(T.ETHTOOL_A_STRSET_STRINGSETS)
    counts_only = T.ETHTOOL_A_STRSET_COUNTS_ONLY in info.attrs
    ids = []
    if req is not None:
        raws, _ = kernel_attrs(info.req.buf, req.start, req.end)
        for r in raws:
            tb = _nested(info, r)
            id_ra = tb.get(T.ETHTOOL_A_STRINGSET_ID)
            if id_ra is None:
                continue
            if id_ra.end - id_ra.start != 4:          # stringset_policy: NLA_U32, strict
                raise _err(E.EINVAL, "invalid attribute length", info, id_ra)
            (sid,) = struct.unpack_from("=I", info.req.buf, id_ra.start)
            if sid >= 21:   # ETH_SS_COUNT
                raise _err(E.EOPNOTSUPP, "unknown string set id", info, r)
            if sid in (T.ETH_SS_TEST, T.ETH_SS_STATS, T.ETH_SS_PRIV_FLAGS, T.ETH_SS_PHY_STATS) and dev is None:
                raise _err(E.EINVAL, "requested per device strings without dev", info, r)
            ids.append(sid)
    else:
        ids = [T.ETH_SS_FEATURES]
    sets = []
    for sid in sorted(set(ids)):
        if sid in (T.ETH_SS_TEST, T.ETH_SS_STATS, T.ETH_SS_PRIV_FLAGS, T.ETH_SS_PHY_STATS):
            continue        # the emulated drivers have no per-device strings: count 0, left out
        if sid != T.ETH_SS_FEATURES:
            raise _err(E.EOPNOTSUPP, f"xfrmd: ethtool string set {sid} is not modelled")
        body = nla_u32(T.ETHTOOL_A_STRINGSET_ID, sid) + nla_u32(T.ETHTOOL_A_STRINGSET_COUNT, F.FEATURE_COUNT)
        if not counts_only:
            body += nla(T.ETHTOOL_A_STRINGSET_STRINGS | NLA_F_NESTED, b"".join(
                nla_nested(T.ETHTOOL_A_STRINGS_STRING, nla_u32(T.ETHTOOL_A_STRING_INDEX, i),
                           nla_string(T.ETHTOOL_A_STRING_VALUE, name[:31]))
                for i, name in enumerate(F.FEATURE_NAMES)))
        sets.append(nla_nested(T.ETHTOOL_A_STRINGSETS_STRINGSET, body))
    return nla_nested(T.ETHTOOL_A_STRSET_STRINGSETS, *sets)


# -- the family --------------------------------------------------------------------------

def family(kernel: "Kernel", genl: Genetlink) -> GenlFamily:
    def default_doit(info: GenlRequest) -> Reply:
        """``ethnl_default_doit``."""
        cmd = info.cmd
        if 1 not in info.attrs:                          # GENL_REQ_ATTR_CHECK
            raise KernelError(E.EINVAL, miss_type=1)
        if cmd == T.MSG["STRSET_GET"]:
            dev, flags = parse_header(info, 1, False)
            body = _strset(info, dev, flags)
        else:
            dev, flags = parse_header(info, 1, True, 7 if cmd in _STATS_HDR else 3)
            assert dev is not None
            if cmd in _DRIVER_LACKS:
                raise KernelError(E.EOPNOTSUPP)
            getter = _GETTERS.get(cmd)
            if getter is None:
                raise KernelError(E.EOPNOTSUPP, f"xfrmd: ethtool ETHTOOL_MSG_{T.USER_MSGS[cmd - 1]} "
                                  "is not modelled")
            body = getter(dev, flags)
        info.req.unicast(info.reply(cmd, (reply_header(dev) if dev is not None else b"") + body))
        return Reply()

    def default_dumpit(info: GenlRequest) -> Any:
        """``ethnl_default_dumpit``: one reply per device, devices without the op skipped."""
        cmd = info.cmd
        getter = _GETTERS.get(cmd)
        if getter is None:
            raise KernelError(E.EOPNOTSUPP, f"xfrmd: dumps of ethtool ETHTOOL_MSG_{T.USER_MSGS[cmd - 1]} "
                              "are not modelled")
        _, flags = parse_header(info, 1, False)
        h, portid = info.req.hdr, info.req.sock.portid

        def gen() -> Iterator[bytes]:
            for dev in list(info.req.netns.links):
                try:
                    body = getter(dev, flags)
                except KernelError:          # a device without the op is left out
                    continue
                yield encode_msg(ETHTOOL_GENL_ID, NLM_F_MULTI, h.seq, portid,
                                 genl_payload(cmd, 1, reply_header(dev) + body))
        return info.req.start_dump(gen())

    def set_features(info: GenlRequest) -> Reply:
        """``ethnl_set_features``."""
        wanted_ra = info.attrs.get(T.ETHTOOL_A_FEATURES_WANTED)
        if wanted_ra is None:
            raise KernelError(E.EINVAL)
        dev, flags = parse_header(info, 1, True)
        assert dev is not None
        if dev.features is None:
            raise KernelError(E.EOPNOTSUPP)
        _sync(dev)
        req_wanted, req_mask = parse_bitset(info, wanted_ra, F.FEATURE_COUNT, F.FEATURE_NAMES)
        old_active = dev.features.active_mask
        wv, wm, av, am = F.ethnl_set_features(dev, req_wanted, req_mask, notify=False)
        if not flags & T.ETHTOOL_FLAG_OMIT_REPLY:
            compact = bool(flags & T.ETHTOOL_FLAG_COMPACT_BITSETS)
            n, names = F.FEATURE_COUNT, F.FEATURE_NAMES
            info.req.unicast(info.reply(T.ETHTOOL_MSG_FEATURES_SET_REPLY, reply_header(dev)
                             + T.put_bitset(T.ETHTOOL_A_FEATURES_WANTED, wv, wm, n, names, compact)
                             + T.put_bitset(T.ETHTOOL_A_FEATURES_ACTIVE, av, am, n, names, compact)))
        if dev.features.active_mask != old_active:
            F.netdev_features_change(dev, old_active)
        return Reply()

    ops: dict[int, GenlOp] = {}
    for cmd, fl in enumerate(_OP_FLAGS, 1):
        admin = fl & GENL_UNS_ADMIN_PERM
        if cmd == T.MSG["FEATURES_SET"]:
            doit = set_features
        else:
            doit = default_doit
        ops[cmd] = GenlOp(cmd, doit, default_dumpit if fl & GENL_CMD_CAP_DUMP else None, admin)
    fam = GenlFamily(T.ETHTOOL_GENL_NAME, ETHTOOL_GENL_ID, T.ETHTOOL_GENL_VERSION, maxattr=0,
                     ops=ops, mcgrps=[(T.ETHTOOL_MCGRP_MONITOR_NAME, MONITOR_GROUP)])

    return fam


_STATS_HDR = {T.MSG[n] for n in ("LINKMODES_GET", "PAUSE_GET", "FEC_GET", "STATS_GET",
                                   "MM_GET", "RINGS_GET", "PHY_GET", "TSINFO_GET")}


def ethnl_netdev_event(event: str, dev: "NetDevice", **info: Any) -> None:
    """``ethnl_netdev_event`` (the netdevice chain at NETDEV_PRI_ETHTOOL, registered by the
    genl init call): NETDEV_FEAT_CHANGE → ETHTOOL_MSG_FEATURES_NTF to the "monitor" group:
    compact bitsets, port 0 and the family's broadcast sequence number."""
    if event != "NETDEV_FEAT_CHANGE" or dev.features is None or dev.netns is None:
        return
    kernel = dev.netns.kernel
    genl = kernel.families.get(NETLINK_GENERIC)
    if not isinstance(genl, Genetlink):
        return
    genl.bcast_seq += 1
    msg = encode_msg(ETHTOOL_GENL_ID, 0, genl.bcast_seq, 0, genl_payload(
        T.ETHTOOL_MSG_FEATURES_NTF, 1, reply_header(dev) + features_body(dev, True)))
    kernel.multicast(dev.netns, genl.protocol, MONITOR_GROUP, msg)
