"""NETLINK_ROUTE fixed headers (linux/rtnetlink.h, if_addr.h, fib_rules.h, neighbour.h,
netconf.h): declared once here for the layout test, the trace decoder and the rtnetlink
handlers' flat ``struct`` formats (:func:`~netlink_codec.cstruct.struct_format`).

A field whose name starts with ``_`` is padding (the ``struct`` format skips it);
:data:`C_FIELD_ALIASES` gives the C name of those the header names otherwise."""
from __future__ import annotations

from .cstruct import CStruct, s32, u8, u16, u32


class IfInfoMsg(CStruct):
    _fields_ = [("ifi_family", u8), ("__ifi_pad", u8), ("ifi_type", u16), ("ifi_index", s32),
                ("ifi_flags", u32), ("ifi_change", u32)]


class IfAddrMsg(CStruct):
    # ifa_index is a __u32 in the header; it is read as the int ifindex it is looked up as
    # (__dev_get_by_index), as the rtnetlink handlers here read it
    _fields_ = [("ifa_family", u8), ("ifa_prefixlen", u8), ("ifa_flags", u8), ("ifa_scope", u8),
                ("ifa_index", s32)]


class RtMsg(CStruct):
    _fields_ = [("rtm_family", u8), ("rtm_dst_len", u8), ("rtm_src_len", u8), ("rtm_tos", u8),
                ("rtm_table", u8), ("rtm_protocol", u8), ("rtm_scope", u8), ("rtm_type", u8),
                ("rtm_flags", u32)]


class FibRuleHdr(CStruct):
    _fields_ = [("family", u8), ("dst_len", u8), ("src_len", u8), ("tos", u8), ("table", u8),
                ("res1", u8), ("res2", u8), ("action", u8), ("flags", u32)]


class NdMsg(CStruct):
    _fields_ = [("ndm_family", u8), ("_ndm_pad1", u8), ("_ndm_pad2", u16), ("ndm_ifindex", s32),
                ("ndm_state", u16), ("ndm_flags", u8), ("ndm_type", u8)]


class NetconfMsg(CStruct):
    _fields_ = [("ncm_family", u8)]


class RtGenMsg(CStruct):
    _fields_ = [("rtgen_family", u8)]


# The C names of the structs above, for the layout test.
C_NAMES: dict[str, type[CStruct]] = {
    "struct ifinfomsg": IfInfoMsg, "struct ifaddrmsg": IfAddrMsg, "struct rtmsg": RtMsg,
    "struct fib_rule_hdr": FibRuleHdr, "struct ndmsg": NdMsg, "struct netconfmsg": NetconfMsg,
    "struct rtgenmsg": RtGenMsg}
C_FIELD_ALIASES = {("struct ndmsg", "ndm_pad1"): "_ndm_pad1",
                   ("struct ndmsg", "ndm_pad2"): "_ndm_pad2"}
