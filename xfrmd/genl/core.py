"""NETLINK_GENERIC's core (net/netlink/genetlink.c): families by id, ``genl_rcv_msg``
(family lookup, header length, command lookup, permissions, do/dump). A family is a
:class:`GenlFamily` declaration: name, id, version, operations with their flags, multicast
groups; :class:`Genetlink` is built with the functions that make the families."""
from __future__ import annotations

import errno as E
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from netlink_codec.genl import (GENL_ADMIN_PERM, GENL_CMD_CAP_DO, GENL_CMD_CAP_DUMP,
                                GENL_CMD_CAP_HASPOL, GENL_HDR, GENL_HDRLEN, GENL_UNS_ADMIN_PERM,
                                genl_payload)
from netlink_codec.netlink import (NETLINK_GENERIC, NLM_F_DUMP, NLMSG_HDRLEN, RawAttr,
                                   encode_msg, kernel_attrs)

from ..errors import KernelError
from ..netlink.core import Request

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace

@dataclass
class GenlOp:
    """``struct genl_ops``: ``flags`` are GENL_ADMIN_PERM / GENL_UNS_ADMIN_PERM; the
    capability bits CTRL_CMD_GETFAMILY reports are derived from doit/dumpit/policy."""
    cmd: int
    doit: Callable[["GenlRequest"], Any] | None = None
    dumpit: Callable[["GenlRequest"], Any] | None = None
    flags: int = 0
    has_policy: bool = True

    @property
    def ctrl_flags(self) -> int:
        return (self.flags | (GENL_CMD_CAP_DO if self.doit else 0)
                | (GENL_CMD_CAP_DUMP if self.dumpit else 0)
                | (GENL_CMD_CAP_HASPOL if self.has_policy else 0))


@dataclass
class GenlFamily:
    """``struct genl_family``."""
    name: str
    id: int
    version: int
    maxattr: int = 0
    hdrsize: int = 0
    ops: dict[int, GenlOp] = field(default_factory=dict)
    mcgrps: list[tuple[str, int]] = field(default_factory=list)   # (name, group id)


class GenlRequest:
    """``struct genl_info`` for one message: the command, version and top-level attributes
    (the last of each type, as ``nlmsg_parse`` keeps them)."""
    __slots__ = ("req", "family", "cmd", "version", "attrs", "hdr_offset")

    def __init__(self, req: Request, family: GenlFamily, cmd: int, version: int) -> None:
        self.req = req
        self.family = family
        self.cmd = cmd
        self.version = version
        self.hdr_offset = req.hdr.offset
        start = req.payload_offset + GENL_HDRLEN + family.hdrsize
        raws, _ = kernel_attrs(req.buf, start, req.end)
        self.attrs: dict[int, RawAttr] = {ra.type: ra for ra in raws}

    def offset_of(self, ra: RawAttr) -> int:
        """NLMSGERR_ATTR_OFFS of an attribute: from the start of the request's nlmsghdr."""
        return ra.offset - self.hdr_offset

    def reply(self, cmd: int, attrs: bytes, *, flags: int = 0) -> bytes:
        """``genlmsg_put_reply``: the family's id and version, the request's seq and the
        sender's port."""
        h = self.req.hdr
        return encode_msg(self.family.id, flags, h.seq, self.req.sock.portid,
                          genl_payload(cmd, self.family.version, attrs))


FamilyMaker = Callable[["Kernel", "Genetlink"], GenlFamily]


class Genetlink:
    protocol = NETLINK_GENERIC
    groups = 32

    def __init__(self, kernel: "Kernel", families: Iterable[FamilyMaker] = ()):
        self.kernel = kernel
        self.families: dict[int, GenlFamily] = {}
        self.refuse_sockets = False      # `xfrmd ctl genetlink off`: socket() → EPROTONOSUPPORT
        self.bcast_seq = 0               # ethnl_bcast_seq
        for make in families:
            self.genl_register_family(make(kernel, self))

    def genl_register_family(self, fam: GenlFamily) -> None:
        """``genl_register_family``."""
        self.families[fam.id] = fam

    def by_name(self, name: str) -> GenlFamily | None:
        for fam in self.families.values():
            if fam.name == name:
                return fam
        return None

    def init_net(self, ns: "NetNamespace") -> None:
        pass

    def exit_net(self, ns: "NetNamespace") -> None:
        pass

    def rcv_msg(self, req: Request) -> Any:
        """``genl_rcv_msg`` → ``genl_family_rcv_msg``."""
        h = req.hdr
        fam = self.families.get(h.type)
        if fam is None:
            raise KernelError(E.ENOENT)
        if h.len < NLMSG_HDRLEN + GENL_HDRLEN + fam.hdrsize:
            raise KernelError(E.EINVAL)
        cmd, version, _ = GENL_HDR.unpack_from(req.buf, req.payload_offset)
        op = fam.ops.get(cmd)
        if op is None:
            raise KernelError(E.EOPNOTSUPP)
        # genl_family_rcv_msg: GENL_ADMIN_PERM is netlink_capable (the init user namespace),
        # GENL_UNS_ADMIN_PERM netlink_ns_capable in the netns's (xfrmd/capability.py)
        if op.flags & GENL_ADMIN_PERM and not req.sock.cap_net_admin_init:
            raise KernelError(E.EPERM)
        if op.flags & GENL_UNS_ADMIN_PERM and not req.sock.cap_net_admin:
            raise KernelError(E.EPERM)
        info = GenlRequest(req, fam, cmd, version)
        if h.flags & NLM_F_DUMP == NLM_F_DUMP:
            if op.dumpit is None:
                raise KernelError(E.EOPNOTSUPP)
            return op.dumpit(info)
        if op.doit is None:
            raise KernelError(E.EOPNOTSUPP)
        return op.doit(info)
