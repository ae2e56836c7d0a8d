"""Names for the trace decoder (``xfrmd trace``): rtnetlink message types, their fixed headers
and top-level attributes (include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h, fib_rules.h,
netconf.h, neighbour.h), and the ethtool genetlink commands. Only what a person reading a
trace needs; numbers without a name print as ``IFLA#70``."""
from __future__ import annotations

import struct

from netlink_codec import rtnl as R
from netlink_codec.cstruct import CStruct, flat_struct, struct_format
from netlink_codec.ethtool import USER_MSGS

# RTM_* come in groups of four from RTM_BASE (16): NEW, DEL, GET, SET
RTM_GROUPS = ["LINK", "ADDR", "ROUTE", "NEIGH", "RULE", "QDISC", "TCLASS", "TFILTER", "ACTION",
              "PREFIX", "MULTICAST", "ANYCAST", "NEIGHTBL", "NDUSEROPT", "ADDRLABEL", "DCB",
              "NETCONF", "MDB", "NSID", "STATS", "CACHEREPORT", "CHAIN", "NEXTHOP", "LINKPROP",
              "VLAN", "NEXTHOPBUCKET", "TUNNEL"]
RTM_OPS = ["NEW", "DEL", "GET", "SET"]


def rtm_name(t: int) -> str:
    g, op = divmod(t - 16, 4)
    if t < 16 or g >= len(RTM_GROUPS):
        raise ValueError(t)
    return f"RTM_{RTM_OPS[op]}{RTM_GROUPS[g]}"


def _names(prefix: str, names: str) -> dict[int, str]:
    return {i: f"{prefix}_{n}" for i, n in enumerate(names.split()) if n != "-"}


IFLA = _names("IFLA", """UNSPEC ADDRESS BROADCAST IFNAME MTU LINK QDISC STATS COST PRIORITY
    MASTER WIRELESS PROTINFO TXQLEN MAP WEIGHT OPERSTATE LINKMODE LINKINFO NET_NS_PID IFALIAS
    NUM_VF VFINFO_LIST STATS64 VF_PORTS PORT_SELF AF_SPEC GROUP NET_NS_FD EXT_MASK PROMISCUITY
    NUM_TX_QUEUES NUM_RX_QUEUES CARRIER PHYS_PORT_ID CARRIER_CHANGES PHYS_SWITCH_ID
    LINK_NETNSID PHYS_PORT_NAME PROTO_DOWN GSO_MAX_SEGS GSO_MAX_SIZE PAD XDP EVENT NEW_NETNSID
    TARGET_NETNSID CARRIER_UP_COUNT CARRIER_DOWN_COUNT NEW_IFINDEX MIN_MTU MAX_MTU PROP_LIST
    ALT_IFNAME PERM_ADDRESS PROTO_DOWN_REASON PARENT_DEV_NAME PARENT_DEV_BUS_NAME GRO_MAX_SIZE
    TSO_MAX_SIZE TSO_MAX_SEGS ALLMULTI DEVLINK_PORT GSO_IPV4_MAX_SIZE GRO_IPV4_MAX_SIZE DPLL_PIN
    MAX_PACING_OFFLOAD_HORIZON NETNS_IMMUTABLE""")
IFA = _names("IFA", "UNSPEC ADDRESS LOCAL LABEL BROADCAST ANYCAST CACHEINFO MULTICAST FLAGS "
                    "RT_PRIORITY TARGET_NETNSID PROTO")
RTA = _names("RTA", """UNSPEC DST SRC IIF OIF GATEWAY PRIORITY PREFSRC METRICS MULTIPATH
    PROTOINFO FLOW CACHEINFO SESSION MP_ALGO TABLE MARK MFC_STATS VIA NEWDST PREF ENCAP_TYPE
    ENCAP EXPIRES PAD UID TTL_PROPAGATE IP_PROTO SPORT DPORT NH_ID FLOWLABEL""")
FRA = _names("FRA", """UNSPEC DST SRC IIFNAME GOTO - PRIORITY - - - FWMARK FLOW TUN_ID
    SUPPRESS_IFGROUP SUPPRESS_PREFIXLEN TABLE FWMASK OIFNAME PAD L3MDEV UID_RANGE PROTOCOL
    IP_PROTO SPORT_RANGE DPORT_RANGE DSCP FLOWLABEL FLOWLABEL_MASK""")
NETCONFA = _names("NETCONFA", "UNSPEC IFINDEX FORWARDING RP_FILTER MC_FORWARDING PROXY_NEIGH "
                              "IGNORE_ROUTES_WITH_LINKDOWN INPUT BC_FORWARDING")
NDA = _names("NDA", "UNSPEC DST LLADDR CACHEINFO PROBES VLAN PORT VNI IFINDEX MASTER "
                    "LINK_NETNSID SRC_VNI PROTOCOL NH_ID FDB_EXT_ATTRS FLAGS_EXT")
NETNSA = _names("NETNSA", "NONE NSID PID FD TARGET_NSID CURRENT_NSID")

# group → (fixed header, attribute names)
RTM_LAYOUT: dict[str, tuple[type[CStruct], dict[int, str]]] = {
    "LINK": (R.IfInfoMsg, IFLA),
    "LINKPROP": (R.IfInfoMsg, IFLA),
    "ADDR": (R.IfAddrMsg, IFA),
    "ROUTE": (R.RtMsg, RTA),
    "RULE": (R.FibRuleHdr, FRA),
    "NEIGH": (R.NdMsg, NDA),
    "NETCONF": (R.NetconfMsg, NETCONFA),
    "NSID": (R.RtGenMsg, NETNSA),
}
# shown in a message's summary when non-zero (or always, for these)
RTM_SHOWN = {"ifindex", "family", "prefixlen", "dst_len", "table", "action"}
# the header's field prefixes, dropped in a summary ("ifa_prefixlen" shows as "prefixlen")
_PREFIXES = ("ifi_", "ifa_", "rtm_", "ndm_", "ncm_", "rtgen_")


def _shown(field: str) -> str:
    short = field.split("_", 1)[1] if field.startswith(_PREFIXES) else field
    return "ifindex" if short == "index" else short


def _layout(cls: type[CStruct]) -> tuple[struct.Struct, tuple[str, ...]]:
    return flat_struct(cls), tuple(_shown(n) for n in struct_format(cls)[1])


_LAYOUTS = {group: _layout(cls) + (names,) for group, (cls, names) in RTM_LAYOUT.items()}


def rtm_layout(t: int) -> tuple[struct.Struct, tuple[str, ...], dict[int, str]] | None:
    """(struct, field names, attribute names) of an RTM_* type, or None."""
    if not 16 <= t < 16 + 4 * len(RTM_GROUPS):
        return None
    return _LAYOUTS.get(RTM_GROUPS[(t - 16) // 4])


# ethtool (include/uapi/linux/ethtool_netlink_generated.h): kernel → userspace numbering
ETHTOOL_KERNEL_MSGS = ["STRSET_GET_REPLY", "LINKINFO_GET_REPLY", "LINKINFO_NTF",
                       "LINKMODES_GET_REPLY", "LINKMODES_NTF", "LINKSTATE_GET_REPLY",
                       "DEBUG_GET_REPLY", "DEBUG_NTF", "WOL_GET_REPLY", "WOL_NTF",
                       "FEATURES_GET_REPLY", "FEATURES_SET_REPLY", "FEATURES_NTF",
                       "PRIVFLAGS_GET_REPLY", "PRIVFLAGS_NTF", "RINGS_GET_REPLY", "RINGS_NTF",
                       "CHANNELS_GET_REPLY", "CHANNELS_NTF", "COALESCE_GET_REPLY",
                       "COALESCE_NTF", "PAUSE_GET_REPLY", "PAUSE_NTF", "EEE_GET_REPLY",
                       "EEE_NTF", "TSINFO_GET_REPLY"]
CTRL_ATTR = _names("CTRL_ATTR", "UNSPEC FAMILY_ID FAMILY_NAME VERSION HDRSIZE MAXATTR OPS "
                                "MCAST_GROUPS POLICY OP_POLICY OP")
# ethtool's attributes are numbered per message; attribute 1 is always the request header
ETHTOOL_ATTRS = {
    "FEATURES": _names("ETHTOOL_A_FEATURES", "UNSPEC HEADER HW WANTED ACTIVE NOCHANGE"),
    "STRSET": _names("ETHTOOL_A_STRSET", "UNSPEC HEADER STRINGSETS COUNTS_ONLY"),
}


def genl_attr_name(family: str, cmd_name: str, t: int) -> str:
    if family == "nlctrl":
        return CTRL_ATTR.get(t, f"CTRL_ATTR#{t}")
    if family == "ethtool":
        msg = cmd_name.removeprefix("ETHTOOL_MSG_").split("_")[0]
        names = ETHTOOL_ATTRS.get(msg)
        if names and t in names:
            return names[t]
        return "ETHTOOL_A_HEADER" if t == 1 else f"ETHTOOL_A_{msg}#{t}"
    return f"attr#{t}"


CTRL_CMDS = ["UNSPEC", "NEWFAMILY", "DELFAMILY", "GETFAMILY", "NEWOPS", "DELOPS", "GETOPS",
             "NEWMCAST_GRP", "DELMCAST_GRP", "GETMCAST_GRP", "GETPOLICY"]


def genl_cmd_name(family: str, cmd: int, to_kernel: bool) -> str:
    if family == "nlctrl":
        return f"CTRL_CMD_{CTRL_CMDS[cmd]}" if cmd < len(CTRL_CMDS) else f"CTRL_CMD#{cmd}"
    if family == "ethtool":
        names = USER_MSGS if to_kernel else ETHTOOL_KERNEL_MSGS
        return f"ETHTOOL_MSG_{names[cmd - 1]}" if 0 < cmd <= len(names) else f"ETHTOOL_MSG#{cmd}"
    return f"cmd {cmd}"
