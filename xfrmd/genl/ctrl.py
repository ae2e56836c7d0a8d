"""nlctrl (``genl_ctrl`` in net/netlink/genetlink.c): CTRL_CMD_GETFAMILY by name or id
(``ctrl_getfamily``) and its dump (``ctrl_dumpfamily``), answered with CTRL_CMD_NEWFAMILY
built as ``ctrl_fill_info`` does."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any

from netlink_codec.genl import (CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_HDRSIZE,
                                CTRL_ATTR_MAXATTR, CTRL_ATTR_MCAST_GRP_ID,
                                CTRL_ATTR_MCAST_GRP_NAME, CTRL_ATTR_MCAST_GROUPS,
                                CTRL_ATTR_OP_FLAGS, CTRL_ATTR_OP_ID, CTRL_ATTR_OPS,
                                CTRL_ATTR_VERSION, CTRL_CMD_GETFAMILY, CTRL_CMD_GETPOLICY,
                                CTRL_CMD_NEWFAMILY, GENL_ID_CTRL, GENL_NAMSIZ, genl_payload)
from netlink_codec.netlink import NLM_F_MULTI, encode_msg, nla, nla_string, nla_u16, nla_u32

from ..errors import KernelError
from ..netlink.core import Reply
from .core import GenlFamily, GenlOp, GenlRequest

if TYPE_CHECKING:
    from ..kernel import Kernel
    from .core import Genetlink

NLCTRL_NOTIFY_GROUP = 16          # "notify" is GENL_ID_CTRL's own group id


def ctrl_fill_info(fam: GenlFamily) -> bytes:
    out = [nla_string(CTRL_ATTR_FAMILY_NAME, fam.name), nla_u16(CTRL_ATTR_FAMILY_ID, fam.id),
           nla_u32(CTRL_ATTR_VERSION, fam.version), nla_u32(CTRL_ATTR_HDRSIZE, fam.hdrsize),
           nla_u32(CTRL_ATTR_MAXATTR, fam.maxattr)]
    # nla_nest_start_noflag: these nests carry no NLA_F_NESTED
    if fam.ops:
        out.append(nla(CTRL_ATTR_OPS, b"".join(
            nla(i, nla_u32(CTRL_ATTR_OP_ID, op.cmd) + nla_u32(CTRL_ATTR_OP_FLAGS, op.ctrl_flags))
            for i, op in enumerate(sorted(fam.ops.values(), key=lambda o: o.cmd), 1))))
    if fam.mcgrps:
        out.append(nla(CTRL_ATTR_MCAST_GROUPS, b"".join(
            nla(i, nla_u32(CTRL_ATTR_MCAST_GRP_ID, gid) + nla_string(CTRL_ATTR_MCAST_GRP_NAME, name))
            for i, (name, gid) in enumerate(fam.mcgrps, 1))))
    return b"".join(out)


def family(kernel: "Kernel", genl: "Genetlink") -> GenlFamily:
    def getfamily(info: GenlRequest) -> Reply:
        """``ctrl_getfamily``: the name wins over the id; not found → ENOENT, neither → EINVAL."""
        a = info.attrs
        buf = info.req.buf
        err, res = E.EINVAL, None
        if CTRL_ATTR_FAMILY_ID in a:
            ra = a[CTRL_ATTR_FAMILY_ID]
            if ra.end - ra.start >= 2:
                res = genl.families.get(int.from_bytes(buf[ra.start:ra.start + 2], "little"))
            err = E.ENOENT
        if CTRL_ATTR_FAMILY_NAME in a:
            ra = a[CTRL_ATTR_FAMILY_NAME]
            name = bytes(buf[ra.start:ra.end]).split(b"\0", 1)[0][:GENL_NAMSIZ - 1]
            res = genl.by_name(name.decode("utf-8", "replace"))
            err = E.ENOENT
        if res is None:
            raise KernelError(err)
        info.req.unicast(info.reply(CTRL_CMD_NEWFAMILY, ctrl_fill_info(res)))
        return Reply()

    def dumpfamily(info: GenlRequest) -> Any:
        h = info.req.hdr
        portid = info.req.sock.portid
        msgs = (encode_msg(GENL_ID_CTRL, NLM_F_MULTI, h.seq, portid,
                           genl_payload(CTRL_CMD_NEWFAMILY, 2, ctrl_fill_info(f)))
                for f in sorted(genl.families.values(), key=lambda f: f.id))
        return info.req.start_dump(msgs)

    def getpolicy(info: GenlRequest) -> Any:
        raise KernelError(E.EOPNOTSUPP, "xfrmd: CTRL_CMD_GETPOLICY (policy dumps) is not modelled")

    return GenlFamily("nlctrl", GENL_ID_CTRL, 2, maxattr=0,
                      ops={CTRL_CMD_GETFAMILY: GenlOp(CTRL_CMD_GETFAMILY, getfamily, dumpfamily),
                           CTRL_CMD_GETPOLICY: GenlOp(CTRL_CMD_GETPOLICY, None, getpolicy)},
                      mcgrps=[("notify", NLCTRL_NOTIFY_GROUP)])
