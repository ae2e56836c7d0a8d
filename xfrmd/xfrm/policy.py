"""An SPD entry (``struct xfrm_policy``) with its templates (``struct xfrm_tmpl``), the
selector matching of xfrm_policy.c, and the messages that carry a policy to userspace:
``dump_one_policy`` / ``xfrm_policy_netlink`` (NEWPOLICY), ``xfrm_notify_policy``
(NEW/UPD/DELPOLICY events) and ``xfrm_exp_policy_notify`` (POLEXPIRE)."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from netlink_codec import cext
from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from netlink_codec.netlink import NLM_F_MULTI, encode_msg, nla, nla_u32

from ..cext import source
from . import offload
from .addrcache import SEEN, shared
from .uapi import A, M

if TYPE_CHECKING:
    from ..kernel import Timer
    from .offload import XfrmDevOffload

# xfrm_userpolicy_info: the selector (the first 56 bytes of Policy.key), lft (8 u64), curlft
# (4 u64), priority, index, dir, action, flags, share
USERPOLICY_INFO = struct.Struct("=56s8Q4QIIBBBB4x")   # 168 bytes with the tail padding
SEL_LEN = 56
# xfrm_lifetime_cfg as `ip` sends it, no limits: the one tuple every such policy shares
NO_LIMITS = (X.XFRM_INF,) * 4 + (0,) * 4
TMPL = struct.Struct("=16s4sB3xH2x16sIBBBxIII")
assert TMPL.size == 64
# XFRMA_TMPL with one template, header included
_TMPL_ATTR1 = struct.Struct("=HH" + TMPL.format[1:])
# XFRMA_POLICY_TYPE of each type (copy_to_user_policy_type: type, reserved)
_PTYPE_ATTR = {t: nla(A.POLICY_TYPE, struct.pack("=BxHBx", t, 0, 0))
               for t in (X.XFRM_POLICY_TYPE_MAIN, X.XFRM_POLICY_TYPE_SUB)}


class Template(NamedTuple):
    """``struct xfrm_tmpl`` (as XFRMA_TMPL carries it). A tuple: built by one C call from the
    unpacked request (``Template._make``), one object per template where a slotted class
    took a Python ``__init__``, and untracked by the collector once it has seen it (all its
    fields are bytes and ints). Immutable: who changes a template (MIGRATE, the ACQUIRE
    algorithm masks) puts a ``_replace``d copy in its place."""
    daddr: bytes
    spi: int
    proto: int
    family: int
    saddr: bytes
    reqid: int
    mode: int
    share: int = 0
    optional: int = 0
    aalgos: int = 0xFFFFFFFF
    ealgos: int = 0xFFFFFFFF
    calgos: int = 0xFFFFFFFF

    @classmethod
    def decode(cls, raw: bytes) -> "Template":
        d, spi, proto, fam, s, reqid, mode, share, opt, aa, ea, ca = TMPL.unpack(raw)
        return cls(d, int.from_bytes(spi, "big"), proto, fam, s, reqid, mode, share, opt, aa, ea, ca)

    def encode(self) -> bytes:
        return TMPL.pack(*self._wire())

    def _wire(self) -> tuple[Any, ...]:
        """The fields as ``TMPL`` packs them (the SPI back to network order)."""
        return (self[0], self[1].to_bytes(4, "big")) + self[2:]


def decode_templates(raw: bytes) -> list[Template]:
    """The XFRMA_TMPL payload: as many whole templates as it holds."""
    return decode_templates_at(raw, 0, len(raw))


def decode_templates_at(buf: bytes | bytearray, start: int, end: int) -> list[Template]:
    """The whole templates of ``buf[start:end]``, read in place."""
    return [make_template(*_unpack_tmpl(buf, o))
            for o in range(start, end - TMPL.size + 1, TMPL.size)]


def make_template(d: bytes, spi: bytes, proto: int, fam: int, s: bytes, reqid: int, mode: int,
                  share: int, opt: int, aa: int, ea: int, ca: int) -> Template:
    """A template from ``TMPL``'s fields: addresses shared (addrcache), the SPI an int, ~0
    algorithm masks the one shared int."""
    return _new(Template, (_seen(d) or shared(d), int.from_bytes(spi, "big"), proto, fam,
                           _seen(s) or shared(s), reqid, mode, share, opt,
                           _ANY if aa == _ANY else aa, _ANY if ea == _ANY else ea,
                           _ANY if ca == _ANY else ca))


_unpack_tmpl = TMPL.unpack_from
_new = tuple.__new__          # Template(...) without NamedTuple's Python-level __new__
_seen = SEEN.get


# every algorithm allowed (~0 as `ip` sends it): one shared int, not three per template
_ANY = 0xFFFFFFFF


# -- selectors (xfrm_selector_match) --------------------------------------------------------

def host_selector(src: bytes, dst: bytes, family: int, proto: int = 0, sport: int = 0,
                  dport: int = 0, ifindex: int = 0) -> X.XfrmSelector:
    """``__xfrm_init_tempsel`` from a flow: host prefixes, ports with full masks if set."""
    width = 4 if family == X.AF_INET else 16
    sel = X.XfrmSelector()
    sel.daddr = X.XfrmAddress.of(dst[:width])
    sel.saddr = X.XfrmAddress.of(src[:width])
    sel.prefixlen_d = sel.prefixlen_s = width * 8
    sel.family, sel.proto, sel.ifindex = family, proto, ifindex
    sel.dport, sel.sport = dport, sport
    sel.dport_mask = 0xFFFF if dport else 0
    sel.sport_mask = 0xFFFF if sport else 0
    return sel


def addr_match(a: bytes, b: bytes, plen: int) -> bool:
    """``addr_match``: the first ``plen`` bits are equal."""
    whole, rest = divmod(plen, 8)
    if a[:whole] != b[:whole]:
        return False
    mask = (0xFF << (8 - rest)) & 0xFF
    return not rest or (a[whole] & mask) == (b[whole] & mask)


def selector_match(sel: bytes, flow: bytes) -> bool:
    """``xfrm_selector_match`` of a selector (the first 56 bytes of ``sel``: a policy key
    will do) against a flow given as a host selector."""
    dp, dpm, sp, spm = struct.unpack_from(">HHHH", sel, 32)
    fdp, _, fsp, _ = struct.unpack_from(">HHHH", flow, 32)
    return (addr_match(flow[0:16], sel[0:16], sel[42]) and addr_match(flow[16:32], sel[16:32], sel[43])
            and not ((fdp ^ dp) & dpm) and not ((fsp ^ sp) & spm)
            and (sel[44] == 0 or sel[44] == flow[44])
            and sel[48:52] in (bytes(4), flow[48:52]))          # ifindex: 0 = any


# -- a policy as xfrm_state_find and km_query see it -----------------------------------------

@dataclass
class PolicyWire:
    """A policy as the kernel would copy it to userspace: what ``xfrm_state_find`` and
    ``build_acquire`` read of a policy (the SPD's :class:`Policy` answers the same)."""
    info: bytes                     # xfrm_userpolicy_info (168)
    templates: list[Template]
    ptype: int = X.XFRM_POLICY_TYPE_MAIN
    mark: tuple[int, int] = (0, 0)
    if_id: int = 0
    offload: bytes = b""            # XFRMA_OFFLOAD_DEV attribute, header included
    xdo: XfrmDevOffload | None = None   # the SPD policy's device binding (packet offload)

    @classmethod
    def from_message(cls, msg: bytes) -> "PolicyWire":
        """From a NEWPOLICY message (``dump_one_policy``)."""
        info = bytes(msg[16:16 + 168])
        tmpls: list[Template] = []
        ptype, mark, if_id, off = 0, (0, 0), 0, b""
        for ra in N.iter_attrs(msg, 16 + 168, len(msg)):
            body = bytes(msg[ra.start:ra.end])
            if ra.type == A.TMPL:
                tmpls = decode_templates(body)
            elif ra.type == A.POLICY_TYPE:
                ptype = body[0]
            elif ra.type == A.MARK:
                mark = struct.unpack("=II", body[:8])
            elif ra.type == A.IF_ID:
                if_id = struct.unpack("=I", body[:4])[0]
            elif ra.type == A.OFFLOAD_DEV:
                off = N.nla(A.OFFLOAD_DEV, body)
        return cls(info, tmpls, ptype, mark, if_id, off)

    def out_info(self) -> bytes:
        """``copy_to_user_policy(xp, p, XFRM_POLICY_OUT)``: dir OUT, share ANY."""
        b = bytearray(self.info)
        b[160] = X.XFRM_POLICY_OUT
        b[163] = X.XFRM_SHARE_ANY
        b[164:168] = bytes(4)
        return bytes(b)


def policy_id2dir(index: int) -> int:
    """``xfrm_policy_id2dir``: the direction lives in the low three bits of the index."""
    return index & 7


# what xfrm_policy_insert_list / xfrm_policy_bysel_ctx compare, as one bytes object: the
# whole selector (memcmp), direction, type, if_id, mark value and mask (no security context
# without an LSM)
POLICY_KEY = struct.Struct("=56sBBIII")
policy_key = POLICY_KEY.pack


class _PolicyHead:
    """The slots of :class:`Policy` a DELPOLICY reads (``xfrm_policy_delete``,
    ``xfrm_policy_kill``; the grace period's end reads the index), in the first cache line
    of the policy: a policy is a 192-byte pymalloc block whose object starts on a line
    (the collector's header sits in the line before), refcount and type, then these six.
    CPython lays a class's slots out after its base's, each class's in the order of their
    sorted names: in one class with the others they were spread over the object's three
    lines (``dead`` in the first, ``key`` and ``dir`` in the second, ``timer`` and ``xdo``
    in the third), two cold lines more per delete at a million policies."""
    __slots__ = ("dead", "dir", "index", "key", "timer", "xdo")


class Policy(_PolicyHead):
    """``struct xfrm_policy``. Its selector lives in ``key`` (the by-selector index's key,
    the selector its first 56 bytes): a lookup or a delete at a million policies touches one
    key object, whose hash the bytes object keeps, where a key tuple was two objects more and
    hashed again on every use. Its slots: :class:`_PolicyHead`'s, then these (a GETPOLICY's
    message, _poldump, reads all three lines, side by side)."""
    __slots__ = ("curlft_use", "type", "if_id", "mark", "lft", "curlft_add", "priority",
                 "action", "flags", "templates", "_wire", "_wire_use", "family")

    def __init__(self, key: bytes, lft: tuple[int, ...], priority: int, index: int,
                 action: int, flags: int, ptype: int, templates: tuple[Template, ...],
                 mark: tuple[int, int], if_id: int, dir: int, family: int):
        self.key = key                 # policy_key(sel, dir, ptype, if_id, *mark)
        self.family = family           # the selector's
        self.lft = lft                 # the 8 lifetime_cfg values
        self.curlft_add = 0
        self.curlft_use = 0
        self.priority, self.index, self.action, self.flags = priority, index, action, flags
        self.type = ptype
        self.templates = templates
        self.mark = mark               # (v, m), stored as given
        self.if_id = if_id
        self.dir = dir
        self.xdo: XfrmDevOffload | None = None   # offload state (xfrmd.xfrm.offload)
        self.dead = False
        self.timer: Timer | None = None
        self._wire: bytes | None = None   # cached dump body (userpolicy_info + attributes)
        self._wire_use = 0             # the curlft_use it was built with

    @property
    def sel(self) -> bytes:
        """The selector bytes as the user sent them."""
        return self.key[:SEL_LEN]

    # -- copy_to_user_policy ------------------------------------------------------------
    def userpolicy_info(self, dir: int | None = None) -> bytes:
        return USERPOLICY_INFO.pack(self.key, *self.lft, 0, 0, self.curlft_add,
                                     self.curlft_use, self.priority, self.index,
                                     self.dir if dir is None else dir, self.action,
                                     self.flags, X.XFRM_SHARE_ANY)

    def _attrs(self) -> bytes:
        """copy_to_user_tmpl, [copy_to_user_sec_ctx], copy_to_user_policy_type,
        xfrm_mark_put, xfrm_if_id_put, copy_user_offload. No LSM: no security context."""
        tmpls = self.templates
        if len(tmpls) == 1:
            out = _TMPL_ATTR1.pack(4 + TMPL.size, A.TMPL, *tmpls[0]._wire()) + _PTYPE_ATTR[self.type]
        elif tmpls:
            out = (nla(A.TMPL, b"".join(t.encode() for t in tmpls))
                   + _PTYPE_ATTR[self.type])
        else:
            out = _PTYPE_ATTR[self.type]
        if self.mark[0] or self.mark[1]:
            out += nla(A.MARK, struct.pack("=II", *self.mark))
        if self.if_id:
            out += nla_u32(A.IF_ID, self.if_id)
        if self.xdo is not None:
            out += offload.copy_user_offload(self)
        return out

    # -- what xfrm_state_find and build_acquire read (the PolicyWire interface) ---------
    @property
    def ptype(self) -> int:
        return self.type

    @property
    def offload(self) -> bytes:
        """The XFRMA_OFFLOAD_DEV attribute ``copy_user_offload`` writes, or b""."""
        return offload.copy_user_offload(self) if self.xdo is not None else b""

    def out_info(self) -> bytes:
        """``copy_to_user_policy(xp, p, XFRM_POLICY_OUT)``: dir OUT, share ANY."""
        return self.userpolicy_info(X.XFRM_POLICY_OUT)

    def invalidate(self) -> None:
        """Something the cached wire form holds changed (templates moved by MIGRATE, the
        offload binding)."""
        self._wire = None

    def dump_message(self, seq: int, portid: int, flags: int = NLM_F_MULTI) -> bytes:
        """``dump_one_policy``: NEWPOLICY for dumps (NLM_F_MULTI) and GETPOLICY answers.
        The reference of the C builder (module-level :data:`dump_message`, which callers
        use). The body is cached: only the use time and the offload binding change it
        (index and add time are set once, by the insert, before anything reads it)."""
        return encode_msg(M.NEWPOLICY, flags, seq, portid, self.wire_body())

    def wire_body(self) -> bytes:
        """userpolicy_info + attributes, rebuilt only when something in them changed."""
        wire = self._wire
        if wire is None or self._wire_use != self.curlft_use:
            self._wire = wire = self.userpolicy_info() + self._attrs()
            self._wire_use = self.curlft_use
        return wire

    def notify_message(self, event: int, seq: int, pid: int, byid: bool = False) -> bytes:
        """``xfrm_notify_policy``."""
        if event == M.DELPOLICY:
            if byid:
                pid_part = bytes(SEL_LEN) + struct.pack("=IB3x", self.index, self.dir)
            else:
                pid_part = self.key[:SEL_LEN] + struct.pack("=IB3x", 0, self.dir)
            body = pid_part + nla(A.POLICY, self.userpolicy_info()) + self._attrs()
        else:
            body = self.userpolicy_info() + self._attrs()
        return encode_msg(event, 0, seq, pid, body)

    def polexpire_message(self, hard: bool, pid: int) -> bytes:
        """``xfrm_exp_policy_notify``: xfrm_user_polexpire{pol, hard} + attributes."""
        body = self.userpolicy_info() + struct.pack("=B7x", int(hard)) + self._attrs()
        return encode_msg(M.POLEXPIRE, 0, 0, pid, body)


# the C half of dump_one_policy (None: the Python path, XFRMD_PURE_PYTHON or not built)
_poldump = cext.load("xfrmd.xfrm._poldump", source("xfrmd.xfrm._poldump"))
if _poldump is not None:
    try:
        _poldump.setup(Policy, Template, NO_LIMITS, Policy.dump_message)
    except (TypeError, ValueError):     # a slot it reads is gone: Python (test_poldump fails)
        _poldump = None

#: ``dump_one_policy(pol, seq, portid, flags=NLM_F_MULTI)``: a policy's NEWPOLICY message for a
#: dump or a GETPOLICY answer. The C half (``_poldump.c``) builds the common policies' message
#: in one allocation from the fields, cached nowhere, as the kernel builds it at dump time
#: (the Python method's cached body cost ~2.6 µs per policy at its first dump, a NEWPOLICY
#: that built it ~2 µs more); an offload binding, or anything it cannot be sure of, goes
#: to :meth:`Policy.dump_message`.
dump_message = Policy.dump_message if _poldump is None else _poldump.message


def flush_message(ptype: int, seq: int, pid: int) -> bytes:
    """``xfrm_notify_policy_flush``: no fixed part, XFRMA_POLICY_TYPE."""
    return encode_msg(M.FLUSHPOLICY, 0, seq, pid, nla(A.POLICY_TYPE, struct.pack("=BxHBx", ptype, 0, 0)))


