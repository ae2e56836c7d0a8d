"""An XFRM request after ``xfrm_user_rcv_msg`` parsed its attributes: what every handler of
xfrm_user.c takes (the ``struct nlattr **attrs`` and the netlink message, with the helpers
xfrm_user.c uses on them: ``xfrm_mark_get``, the policy-type and security-context checks)."""
from __future__ import annotations

import errno as E
import struct
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from netlink_codec import xfrm as X
from netlink_codec.netlink import NETLINK_XFRM, RawAttr, encode_msg

from ..errors import KernelError
from ..netlink.core import OK, Reply, Request
from .uapi import A

if TYPE_CHECKING:
    from .netns import XfrmNet


class _Padded(Protocol):
    @classmethod
    def decode_padded(cls, buf: Any, offset: int = 0, end: int | None = None) -> Any: ...


S = TypeVar("S", bound=_Padded)


class XfrmRequest(Request):
    """A request after parsing: ``attrs`` maps XFRMA_* to the last RawAttr of that type;
    ``warning``: the extack message a success ACK carries (a parse warning, a driver's).

    ``netlink_rcv_msg`` makes it with Request's four fields (``XfrmUser.request_type``);
    ``xfrm_user_rcv_msg`` sets the two below before any handler sees it."""
    __slots__ = ("attrs", "warning")
    attrs: dict[int, RawAttr]
    warning: Reply | None

    @classmethod
    def of(cls, base: Request) -> XfrmRequest:
        """The XFRM request for a plain :class:`Request` (a caller that made its own)."""
        return cls(base.kernel, base.sock, base.buf, base.hdr)

    @property
    def xfrm(self) -> XfrmNet:
        xnet: XfrmNet = self.sock.netns.xfrm    # not typing.cast: a call per request
        return xnet

    def fixed(self, cls: type[S]) -> S:
        """The fixed part of the message; short ones are zero-padded (already length-checked)."""
        return cast(S, cls.decode_padded(self.buf, self.payload_offset, self.end))

    def has(self, t: int) -> bool:
        return t in self.attrs

    def attr_bytes(self, t: int) -> bytes | None:
        ra = self.attrs.get(t)
        return None if ra is None else bytes(self.buf[ra.start:ra.end])

    def attr_struct(self, t: int, cls: type[S]) -> S | None:
        """The attribute's payload as ``cls`` (the policy guaranteed its minimum length)."""
        ra = self.attrs.get(t)
        return None if ra is None else cast(S, cls.decode_padded(self.buf, ra.start, ra.end))

    def attr_int(self, t: int, size: int = 4) -> int | None:
        ra = self.attrs.get(t)
        if ra is None:
            return None
        return int.from_bytes(bytes(self.buf[ra.start:ra.start + size]).ljust(size, b"\0"), "little")

    def attr_u32(self, t: int, size: int = 4) -> int:
        """The attribute's value, 0 when absent (``nla_get_u32`` behind an ``if (attrs[t])``)."""
        ra = self.attrs.get(t)
        if ra is None:
            return 0
        return int.from_bytes(bytes(self.buf[ra.start:ra.start + size]).ljust(size, b"\0"), "little")

    def attr_offset(self, t: int) -> int:
        """Offset of the attribute from the request's nlmsghdr (for NLMSGERR_ATTR_OFFS)."""
        return self.attrs[t].offset - self.hdr.offset

    def mark(self) -> tuple[int, int]:
        """``xfrm_mark_get``: the request's XFRMA_MARK (value, mask), or (0, 0)."""
        ra = self.attrs.get(A.MARK)
        if ra is None:
            return (0, 0)
        v, m = struct.unpack_from("=II", self.buf, ra.start)
        return (v, m)

    def if_id(self) -> int:
        """XFRMA_IF_ID, 0 when absent."""
        return self.attr_u32(A.IF_ID)

    def policy_type(self) -> int:
        """``copy_from_user_policy_type`` + ``verify_policy_type`` (this kernel has
        CONFIG_XFRM_SUB_POLICY: MAIN and SUB)."""
        ra = self.attrs.get(A.POLICY_TYPE)
        t = X.XFRM_POLICY_TYPE_MAIN if ra is None else self.buf[ra.start]
        if t not in (X.XFRM_POLICY_TYPE_MAIN, X.XFRM_POLICY_TYPE_SUB):
            raise KernelError(E.EINVAL, "Invalid policy type")
        return int(t)

    def verify_sec_ctx_len(self) -> None:
        """``verify_sec_ctx_len``: the context's declared length must fit and add up."""
        ra = self.attrs.get(A.SEC_CTX)
        if ra is None:
            return
        length, _, _, _, ctx_len = struct.unpack_from("=HHBBH", self.buf, ra.start)
        if length > ra.end - ra.start or length != 8 + ctx_len:
            raise KernelError(E.EINVAL, "Invalid security context length")

    def reply(self, msg_type: int, payload: bytes, flags: int = 0) -> None:
        """A unicast answer to the requester with the request's seq and the socket's port id."""
        self.unicast(encode_msg(msg_type, flags, self.hdr.seq, self.sock.portid, payload))

    def notify(self, group: int, msg_type: int, payload: bytes, *, seq: int | None = None,
               pid: int | None = None) -> None:
        """Multicast an event made by this request: seq and pid of the request header
        (``km_event`` c.seq / c.portid), flags 0."""
        data = encode_msg(msg_type, 0, self.hdr.seq if seq is None else seq,
                          self.hdr.pid if pid is None else pid, payload)
        self.kernel.multicast(self.sock.netns, NETLINK_XFRM, group, data)

    def ok(self) -> Reply:
        """Success, carrying a parse warning (extack message on the ACK) if there was one:
        else the shared ``OK`` (no outcome is changed after it is returned, as rtnetlink's
        handlers already return ``OK``; a new Reply cost ~2k instructions a request)."""
        return self.warning or OK
