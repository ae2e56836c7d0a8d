"""An SPD entry (``struct xfrm_policy``) and the messages that carry it to userspace:
``dump_one_policy`` / ``xfrm_policy_netlink`` (NEWPOLICY), ``xfrm_notify_policy``
(NEW/UPD/DELPOLICY events) and ``xfrm_exp_policy_notify`` (POLEXPIRE)."""
from __future__ import annotations

import struct

from netlink_codec import xfrm as X
from netlink_codec.netlink import NLM_F_MULTI, encode_msg, nla, nla_u32

from . import offload
from .acquire import TMPL, Template

A = X.Xfrma
M = X.XfrmMsg
# xfrm_userpolicy_info without sel: lft (8 u64), curlft (4 u64), priority, index, dir,
# action, flags, share
_INFO_TAIL = struct.Struct("=8Q4QIIBBBB4x")   # 168 bytes with the tail padding
SEL_LEN = 56


def policy_id2dir(index: int) -> int:
    """``xfrm_policy_id2dir``: the direction lives in the low three bits of the index."""
    return index & 7


class Policy:
    __slots__ = ("sel", "family", "lft", "curlft_add", "curlft_use", "priority", "index",
                 "dir", "action", "flags", "type", "templates", "mark", "if_id", "xdo",
                 "dead", "timer", "hard_expired", "_wire", "_wire_key")

    def __init__(self, sel: bytes, lft: tuple, priority: int, index: int, action: int,
                 flags: int, ptype: int, templates: list, mark: tuple, if_id: int, dir: int):
        self.sel = sel                 # the selector bytes as the user sent them
        self.family = int.from_bytes(sel[40:42], "little")
        self.lft = lft                 # the 8 lifetime_cfg values
        self.curlft_add = 0
        self.curlft_use = 0
        self.priority, self.index, self.action, self.flags = priority, index, action, flags
        self.type = ptype
        self.templates: list[Template] = templates
        self.mark = mark               # (v, m), stored as given
        self.if_id = if_id
        self.dir = dir
        self.xdo = None                # offload state (xfrmd.xfrm.offload)
        self.dead = False
        self.timer = None
        self._wire = None              # cached dump body (userpolicy_info + attributes)
        self._wire_key = None

    # -- identity ---------------------------------------------------------------------
    @property
    def key(self) -> tuple:
        """What ``xfrm_policy_insert_list`` / ``xfrm_policy_bysel_ctx`` compare: type,
        if_id, the whole selector (memcmp), mark value and mask, (no security context
        without an LSM), within one direction."""
        return (self.dir, self.type, self.if_id, self.sel, self.mark)

    # -- copy_to_user_policy ------------------------------------------------------------
    def userpolicy_info(self, dir: int | None = None) -> bytes:
        sel = self.sel[:40] + struct.pack("=H", self.family) + self.sel[42:]
        return sel + _INFO_TAIL.pack(*self.lft, 0, 0, self.curlft_add, self.curlft_use,
                                     self.priority, self.index,
                                     self.dir if dir is None else dir, self.action,
                                     self.flags, X.XFRM_SHARE_ANY)

    def _attrs(self, sec_ctx: bool = True) -> bytes:
        """copy_to_user_tmpl, [copy_to_user_sec_ctx], copy_to_user_policy_type,
        xfrm_mark_put, xfrm_if_id_put, copy_user_offload. No LSM: no security context."""
        out = b""
        if self.templates:
            out += nla(A.TMPL, b"".join(t.encode() for t in self.templates))
        out += nla(A.POLICY_TYPE, struct.pack("=BxHBx", self.type, 0, 0))
        if self.mark[0] or self.mark[1]:
            out += nla(A.MARK, struct.pack("=II", *self.mark))
        if self.if_id:
            out += nla_u32(A.IF_ID, self.if_id)
        if self.xdo is not None:
            out += offload.copy_user_offload(self)
        return out

    def invalidate(self) -> None:
        """Something the cached wire form holds changed (templates moved by MIGRATE)."""
        self._wire_key = None

    def dump_message(self, seq: int, portid: int, flags: int = NLM_F_MULTI) -> bytes:
        """``dump_one_policy``: NEWPOLICY for dumps (NLM_F_MULTI) and GETPOLICY answers.
        The body is cached: only the lifetimes' times and the offload binding can change it."""
        return encode_msg(M.NEWPOLICY, flags, seq, portid, self.wire_body())

    def wire_body(self) -> bytes:
        """userpolicy_info + attributes, rebuilt only when something in them changed."""
        key = (self.curlft_add, self.curlft_use, self.index, self.xdo)
        if self._wire_key != key:
            self._wire = self.userpolicy_info() + self._attrs()
            self._wire_key = key
        return self._wire

    def notify_message(self, event: int, seq: int, pid: int, byid: bool = False) -> bytes:
        """``xfrm_notify_policy``."""
        if event == M.DELPOLICY:
            if byid:
                pid_part = bytes(SEL_LEN) + struct.pack("=IB3x", self.index, self.dir)
            else:
                pid_part = self.sel + struct.pack("=IB3x", 0, self.dir)
            body = pid_part + nla(A.POLICY, self.userpolicy_info()) + self._attrs()
        else:
            body = self.userpolicy_info() + self._attrs()
        return encode_msg(event, 0, seq, pid, body)

    def polexpire_message(self, hard: bool, pid: int) -> bytes:
        """``xfrm_exp_policy_notify``: xfrm_user_polexpire{pol, hard} + attributes."""
        body = self.userpolicy_info() + struct.pack("=B7x", int(hard)) + self._attrs()
        return encode_msg(M.POLEXPIRE, 0, 0, pid, body)


def flush_message(ptype: int, seq: int, pid: int) -> bytes:
    """``xfrm_notify_policy_flush``: no fixed part, XFRMA_POLICY_TYPE."""
    return encode_msg(M.FLUSHPOLICY, 0, seq, pid, nla(A.POLICY_TYPE, struct.pack("=BxHBx", ptype, 0, 0)))


def decode_templates(raw: bytes) -> list[Template]:
    return [Template.decode(raw[i:i + TMPL.size]) for i in range(0, len(raw) - TMPL.size + 1,
                                                                    TMPL.size)]
