"""The ethtool generic-netlink family (include/uapi/linux/ethtool_netlink.h): message and
attribute numbers, and the bitset encoding of net/ethtool/bitset.c (compact: value/mask
words; verbose: one nest per bit with index, name and value flag)."""
from __future__ import annotations

import struct

from .message import AttrSpace
from .netlink import NLA_F_NESTED, nla, nla_flag, nla_string, nla_u32

ETHTOOL_GENL_NAME = "ethtool"
ETHTOOL_GENL_VERSION = 1
ETHTOOL_MCGRP_MONITOR_NAME = "monitor"

# userspace → kernel commands (ETHTOOL_MSG_*), 6.18: 1 … 50
USER_MSGS = [
    "STRSET_GET", "LINKINFO_GET", "LINKINFO_SET", "LINKMODES_GET", "LINKMODES_SET",
    "LINKSTATE_GET", "DEBUG_GET", "DEBUG_SET", "WOL_GET", "WOL_SET", "FEATURES_GET",
    "FEATURES_SET", "PRIVFLAGS_GET", "PRIVFLAGS_SET", "RINGS_GET", "RINGS_SET", "CHANNELS_GET",
    "CHANNELS_SET", "COALESCE_GET", "COALESCE_SET", "PAUSE_GET", "PAUSE_SET", "EEE_GET",
    "EEE_SET", "TSINFO_GET", "CABLE_TEST_ACT", "CABLE_TEST_TDR_ACT", "TUNNEL_INFO_GET",
    "FEC_GET", "FEC_SET", "MODULE_EEPROM_GET", "STATS_GET", "PHC_VCLOCKS_GET", "MODULE_GET",
    "MODULE_SET", "PSE_GET", "PSE_SET", "RSS_GET", "PLCA_GET_CFG", "PLCA_SET_CFG",
    "PLCA_GET_STATUS", "MM_GET", "MM_SET", "MODULE_FW_FLASH_ACT", "PHY_GET", "TSCONFIG_GET",
    "TSCONFIG_SET", "RSS_SET", "RSS_CREATE_ACT", "RSS_DELETE_ACT"]
MSG = {name: i + 1 for i, name in enumerate(USER_MSGS)}
ETHTOOL_MSG_STRSET_GET = 1
ETHTOOL_MSG_LINKINFO_GET = 2
ETHTOOL_MSG_LINKMODES_GET = 4
ETHTOOL_MSG_LINKSTATE_GET = 6
ETHTOOL_MSG_DEBUG_GET = 7
ETHTOOL_MSG_WOL_GET = 9
ETHTOOL_MSG_FEATURES_GET = 11
ETHTOOL_MSG_FEATURES_SET = 12
# kernel → userspace
ETHTOOL_MSG_STRSET_GET_REPLY = 1
ETHTOOL_MSG_LINKINFO_GET_REPLY = 2
ETHTOOL_MSG_LINKMODES_GET_REPLY = 4
ETHTOOL_MSG_LINKSTATE_GET_REPLY = 6
ETHTOOL_MSG_FEATURES_GET_REPLY = 11
ETHTOOL_MSG_FEATURES_SET_REPLY = 12
ETHTOOL_MSG_FEATURES_NTF = 13

# request header
ETHTOOL_A_HEADER_DEV_INDEX, ETHTOOL_A_HEADER_DEV_NAME, ETHTOOL_A_HEADER_FLAGS = 1, 2, 3
ETHTOOL_A_HEADER_PHY_INDEX = 4
ETHTOOL_FLAG_COMPACT_BITSETS, ETHTOOL_FLAG_OMIT_REPLY, ETHTOOL_FLAG_STATS = 1, 2, 4

# bitsets
ETHTOOL_A_BITSET_NOMASK, ETHTOOL_A_BITSET_SIZE, ETHTOOL_A_BITSET_BITS = 1, 2, 3
ETHTOOL_A_BITSET_VALUE, ETHTOOL_A_BITSET_MASK = 4, 5
ETHTOOL_A_BITSET_BITS_BIT = 1
ETHTOOL_A_BITSET_BIT_INDEX, ETHTOOL_A_BITSET_BIT_NAME, ETHTOOL_A_BITSET_BIT_VALUE = 1, 2, 3

# string sets
ETHTOOL_A_STRSET_HEADER, ETHTOOL_A_STRSET_STRINGSETS, ETHTOOL_A_STRSET_COUNTS_ONLY = 1, 2, 3
ETHTOOL_A_STRINGSETS_STRINGSET = 1
ETHTOOL_A_STRINGSET_ID, ETHTOOL_A_STRINGSET_COUNT, ETHTOOL_A_STRINGSET_STRINGS = 1, 2, 3
ETHTOOL_A_STRINGS_STRING = 1
ETHTOOL_A_STRING_INDEX, ETHTOOL_A_STRING_VALUE = 1, 2

# features
ETHTOOL_A_FEATURES_HEADER, ETHTOOL_A_FEATURES_HW, ETHTOOL_A_FEATURES_WANTED = 1, 2, 3
ETHTOOL_A_FEATURES_ACTIVE, ETHTOOL_A_FEATURES_NOCHANGE = 4, 5

# link info / modes / state
ETHTOOL_A_LINKINFO_HEADER, ETHTOOL_A_LINKINFO_PORT, ETHTOOL_A_LINKINFO_PHYADDR = 1, 2, 3
ETHTOOL_A_LINKINFO_TP_MDIX, ETHTOOL_A_LINKINFO_TP_MDIX_CTRL = 4, 5
ETHTOOL_A_LINKINFO_TRANSCEIVER = 6
ETHTOOL_A_LINKMODES_HEADER, ETHTOOL_A_LINKMODES_AUTONEG, ETHTOOL_A_LINKMODES_OURS = 1, 2, 3
ETHTOOL_A_LINKMODES_PEER, ETHTOOL_A_LINKMODES_SPEED, ETHTOOL_A_LINKMODES_DUPLEX = 4, 5, 6
ETHTOOL_A_LINKMODES_MASTER_SLAVE_CFG, ETHTOOL_A_LINKMODES_MASTER_SLAVE_STATE = 7, 8
ETHTOOL_A_LINKMODES_LANES, ETHTOOL_A_LINKMODES_RATE_MATCHING = 9, 10
ETHTOOL_A_LINKSTATE_HEADER, ETHTOOL_A_LINKSTATE_LINK = 1, 2

# string set ids (enum ethtool_stringset)
ETH_SS_TEST, ETH_SS_STATS, ETH_SS_PRIV_FLAGS, ETH_SS_NTUPLE_FILTERS = 0, 1, 2, 3
ETH_SS_FEATURES, ETH_SS_RSS_HASH_FUNCS, ETH_SS_TUNABLES, ETH_SS_PHY_STATS = 4, 5, 6, 7
ETH_SS_PHY_TUNABLES, ETH_SS_LINK_MODES = 8, 9


def put_bitset(attrtype: int, value: int, mask: int | None, nbits: int,
               names: list[str] | None, compact: bool) -> bytes:
    """``ethnl_put_bitset32``: a list (NOMASK) when ``mask`` is None, else value/mask; compact
    as u32 words, verbose as a nest per bit set in the mask (or in the value for a list)."""
    parts = []
    if mask is None:
        parts.append(nla_flag(ETHTOOL_A_BITSET_NOMASK))
    parts.append(nla_u32(ETHTOOL_A_BITSET_SIZE, nbits))
    lim = (1 << nbits) - 1
    if compact:
        nwords = (nbits + 31) // 32
        parts.append(nla(ETHTOOL_A_BITSET_VALUE, _words(value & lim, nwords)))
        if mask is not None:
            parts.append(nla(ETHTOOL_A_BITSET_MASK, _words(mask & lim, nwords)))
    else:
        sel = value if mask is None else mask
        bits = []
        for i in range(nbits):
            if not sel >> i & 1:
                continue
            body = nla_u32(ETHTOOL_A_BITSET_BIT_INDEX, i)
            if names is not None:
                body += nla_string(ETHTOOL_A_BITSET_BIT_NAME, names[i])
            if mask is not None and value >> i & 1:
                body += nla_flag(ETHTOOL_A_BITSET_BIT_VALUE)
            bits.append(nla(ETHTOOL_A_BITSET_BITS_BIT | NLA_F_NESTED, body))
        parts.append(nla(ETHTOOL_A_BITSET_BITS | NLA_F_NESTED, b"".join(bits)))
    return nla(attrtype | NLA_F_NESTED, b"".join(parts))


def _words(v: int, n: int) -> bytes:
    return b"".join(struct.pack("=I", (v >> 32 * i) & 0xFFFFFFFF) for i in range(n))


def words_to_int(b: bytes) -> int:
    return sum(struct.unpack_from("=I", b, 4 * i)[0] << 32 * i for i in range(len(b) // 4))


_HEADER = AttrSpace("ETHTOOL_A_HEADER", {ETHTOOL_A_HEADER_DEV_INDEX: "u32",
                                         ETHTOOL_A_HEADER_DEV_NAME: "string",
                                         ETHTOOL_A_HEADER_FLAGS: "u32",
                                         ETHTOOL_A_HEADER_PHY_INDEX: "u32"})
# every ethtool message has its request/reply header as attribute 1; the rest is decoded
# generically (nests stay byte strings unless marked nested on the wire)
ETHTOOL_SPACE = AttrSpace("ETHTOOL_A", {1: "nested"}, nested={1: _HEADER})
