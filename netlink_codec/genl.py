"""Generic netlink (include/uapi/linux/genetlink.h): the genlmsghdr, the nlctrl family's
commands and attributes, and :data:`GENL`, a decoder for messages of nlctrl and of the
ethtool family (the family id of ethtool is dynamic; :data:`ETHTOOL_GENL_ID` is the one
xfrmd hands out, the same as the 6.18 kernel here)."""
from __future__ import annotations

from .cstruct import CStruct, flat_struct, u8, u16
from .ethtool import ETHTOOL_SPACE
from .message import AttrSpace, Family

GENL_HDRLEN = 4
GENL_ID_CTRL = 16

CTRL_CMD_NEWFAMILY, CTRL_CMD_DELFAMILY, CTRL_CMD_GETFAMILY = 1, 2, 3
CTRL_CMD_NEWOPS, CTRL_CMD_DELOPS, CTRL_CMD_GETOPS = 4, 5, 6
CTRL_CMD_NEWMCAST_GRP, CTRL_CMD_DELMCAST_GRP, CTRL_CMD_GETMCAST_GRP = 7, 8, 9
CTRL_CMD_GETPOLICY = 10

CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_VERSION = 1, 2, 3
CTRL_ATTR_HDRSIZE, CTRL_ATTR_MAXATTR, CTRL_ATTR_OPS, CTRL_ATTR_MCAST_GROUPS = 4, 5, 6, 7
CTRL_ATTR_POLICY, CTRL_ATTR_OP_POLICY, CTRL_ATTR_OP = 8, 9, 10
CTRL_ATTR_MAX = 10
CTRL_ATTR_OP_ID, CTRL_ATTR_OP_FLAGS = 1, 2
CTRL_ATTR_MCAST_GRP_NAME, CTRL_ATTR_MCAST_GRP_ID = 1, 2

GENL_ADMIN_PERM = 0x01
GENL_CMD_CAP_DO = 0x02
GENL_CMD_CAP_DUMP = 0x04
GENL_CMD_CAP_HASPOL = 0x08
GENL_UNS_ADMIN_PERM = 0x10

GENL_NAMSIZ = 16
ETHTOOL_GENL_ID = 21


class GenlMsgHdr(CStruct):
    _fields_ = [("cmd", u8), ("version", u8), ("reserved", u16)]


C_NAMES: dict[str, type[CStruct]] = {"struct genlmsghdr": GenlMsgHdr}
GENL_HDR = flat_struct(GenlMsgHdr)         # =BBH


def genl_payload(cmd: int, version: int, attrs: bytes = b"") -> bytes:
    return GENL_HDR.pack(cmd, version, 0) + attrs


_OP = AttrSpace("CTRL_ATTR_OP", {CTRL_ATTR_OP_ID: "u32", CTRL_ATTR_OP_FLAGS: "u32"})
_GRP = AttrSpace("CTRL_ATTR_MCAST_GRP", {CTRL_ATTR_MCAST_GRP_NAME: "string",
                                         CTRL_ATTR_MCAST_GRP_ID: "u32"})
_LIST_OPS = AttrSpace("CTRL_ATTR_OPS", {}, nested={i: _OP for i in range(1, 256)})
_LIST_GRPS = AttrSpace("CTRL_ATTR_MCAST_GROUPS", {}, nested={i: _GRP for i in range(1, 64)})
CTRL_SPACE = AttrSpace("CTRL_ATTR", {
    CTRL_ATTR_FAMILY_ID: "u16", CTRL_ATTR_FAMILY_NAME: "string", CTRL_ATTR_VERSION: "u32",
    CTRL_ATTR_HDRSIZE: "u32", CTRL_ATTR_MAXATTR: "u32", CTRL_ATTR_OPS: "nested",
    CTRL_ATTR_MCAST_GROUPS: "nested"},
    nested={CTRL_ATTR_OPS: _LIST_OPS, CTRL_ATTR_MCAST_GROUPS: _LIST_GRPS})


def _space(t: int, flags: int) -> AttrSpace:
    if t == GENL_ID_CTRL:
        return CTRL_SPACE
    if t == ETHTOOL_GENL_ID:
        return ETHTOOL_SPACE
    return AttrSpace(f"genl#{t}", {})


def _type_name(t: int) -> str:
    if t == GENL_ID_CTRL:
        return "nlctrl"
    if t == ETHTOOL_GENL_ID:
        return "ethtool"
    raise ValueError(t)


GENL = Family("genl", lambda t, f: GenlMsgHdr, _space, type_name=_type_name)
