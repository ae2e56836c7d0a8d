"""Recording and decoding the netlink conversation (``serve --trace``, ``run --trace``,
``xfrmd trace``, the test fixtures' failure dumps).

A trace is JSON lines: ``{"t": seconds, "dir": "tx"|"rx"|"event", "netns": …, "proto": …,
"sock": id, "portid": …, "ext_ack": bool, "data": hex}``, and for an error whose extack the
client did not ask for (no NETLINK_EXT_ACK), ``"extack_not_delivered": hex`` — the TLVs the
kernel would have appended.

Decoding names every family's messages: XFRM (with attribute names), rtnetlink (RTM_*, the
fixed header's key fields, IFLA_/IFA_/RTA_/FRA_… names) and generic netlink (nlctrl, ethtool
commands). An NLMSG_ERROR says which request it answers (type, seq, port), its errno by name,
the extack message, and the attribute the extack offset points at, read from that request."""
from __future__ import annotations

import errno
import json
import os
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from netlink_codec import netlink as N
from netlink_codec.cstruct import Buffer
from netlink_codec.errors import DecodeError
from netlink_codec.genl import GENL
from netlink_codec.message import Family
from netlink_codec.netlink import NETLINK_XFRM
from netlink_codec.xfrm import XFRM

if TYPE_CHECKING:
    from .kernel import Kernel
    from .netlink.socket import NetlinkSocket

from .trace_names import RTM_SHOWN, genl_attr_name, genl_cmd_name, rtm_layout, rtm_name

NETLINK_ROUTE, NETLINK_GENERIC = 0, 16


class TraceWriter:
    def __init__(self, out: TextIO, kernel: Kernel):
        self.out = out
        self.kernel = kernel

    @classmethod
    def open(cls, target: str, kernel: Kernel) -> TraceWriter:
        out = sys.stderr if target == "-" else open(target, "a", buffering=1)
        return cls(out, kernel)

    def __call__(self, direction: str, sock: NetlinkSocket, datagram: bytes) -> None:
        rec: dict[str, Any] = {"t": round(self.kernel.clock.now(), 6), "dir": direction,
               "netns": sock.netns.name, "proto": sock.protocol, "sock": sock.id,
               "portid": sock.portid, "ext_ack": sock.ext_ack, "data": datagram.hex()}
        note = getattr(self.kernel, "trace_note", None)
        if note is not None and direction == "rx" and note[0] == sock.id:
            rec["extack_not_delivered"] = note[1].hex()
        self.out.write(json.dumps(rec) + "\n")


# -- decoding ------------------------------------------------------------------------------

def _errno_name(err: int) -> str:
    e = -err
    return f"-{errno.errorcode.get(e, str(e))} ({os.strerror(e)})"


def _family(proto: int) -> Family | None:
    if proto == NETLINK_XFRM:
        return XFRM
    if proto == NETLINK_GENERIC:
        return GENL
    return None


def type_name(proto: int, t: int) -> str:
    if t < N.NLMSG_MIN_TYPE:
        return {N.NLMSG_NOOP: "NLMSG_NOOP", N.NLMSG_ERROR: "NLMSG_ERROR",
                N.NLMSG_DONE: "NLMSG_DONE", N.NLMSG_OVERRUN: "NLMSG_OVERRUN"}.get(t, f"#{t}")
    if proto == NETLINK_ROUTE:
        try:
            return rtm_name(t)
        except ValueError:
            return f"RTM#{t}"
    fam = _family(proto)
    return fam.type_name(t) if fam else f"#{t}"


def _attrs(buf: Buffer, start: int, end: int,
           names: Callable[[int], str]) -> tuple[list[str], list[N.RawAttr]]:
    """Attribute labels (``IFLA_IFNAME="eth0"`` for names) and the raw attributes."""
    raws = N.kernel_attrs(buf, start, end)[0]
    out = []
    for ra in raws:
        name = names(ra.type)
        if name.endswith(("IFNAME", "_KIND", "LABEL", "NAME")) and not name.endswith("HDR"):
            val = bytes(buf[ra.start:ra.end]).split(b"\0")[0]
            if val.isascii():
                name += f'="{val.decode()}"'
        out.append(name)
    return out, raws


def body(proto: int, buf: Buffer, hdr: N.Header,
         to_kernel: bool) -> tuple[str, list[str], int, Callable[[int], str] | None]:
    """(summary after the type, attribute labels, where attributes start, name function)
    for a data message of ``proto``."""
    start, end = hdr.offset + N.NLMSG_HDRLEN, hdr.offset + hdr.len
    if proto == NETLINK_ROUTE:
        lay = rtm_layout(hdr.type)
        if lay is None:
            return "", [], end, None
        st, fields, names = lay
        at = start + ((st.size + 3) & ~3)
        if end < at:                              # a short (legacy rtgenmsg) dump request
            return (f"family={buf[start]}" if end > start else ""), [], end, None
        vals = dict(zip(fields, st.unpack_from(buf, start)))
        summary = " ".join(f"{k}={v}" for k, v in vals.items() if k in RTM_SHOWN and
                           (v or k in ("ifindex", "family")))
        prefix = next(iter(names.values())).split("_")[0]

        def name(t: int, names: dict[int, str] = names, prefix: str = prefix) -> str:
            return names.get(t, f"{prefix}#{t}")
        return summary, _attrs(buf, at, end, name)[0], at, name
    if proto == NETLINK_GENERIC:
        family = GENL.type_name(hdr.type)
        cmd = genl_cmd_name(family, buf[start], to_kernel) if end > start else ""

        def genl_name(t: int, family: str = family, cmd: str = cmd) -> str:
            return genl_attr_name(family, cmd, t)
        at = start + 4
        return cmd, _attrs(buf, at, end, genl_name)[0], at, genl_name
    fam = _family(proto)
    if fam is None:
        return f"<{hdr.len - N.NLMSG_HDRLEN} bytes>", [], end, None
    cls, rel, space = fam._plan(hdr.type, hdr.flags)
    at = hdr.offset + N.NLMSG_HDRLEN + rel
    if space is None or at > end:
        return "", [], end, None
    return "", _attrs(buf, at, end, space.attr_name)[0], at, space.attr_name


def attr_at(proto: int, request: bytes, offset: int) -> str | None:
    """The name of the attribute that starts at (or contains) ``offset`` in ``request``
    (NLMSGERR_ATTR_OFFS counts from the request's nlmsghdr)."""
    try:
        hdr = N.split_messages(request)[0]
        _, _, at, name = body(proto, request, hdr, True)
        if name is None:
            return None
        for ra in N.kernel_attrs(request, at, hdr.len)[0]:
            if ra.offset <= offset < ra.end:
                return name(ra.type) + ("" if ra.offset == offset else f" (+{offset - ra.offset})")
        if offset < at:
            return "the fixed header"
    except (DecodeError, IndexError, ValueError, struct.error):
        pass
    return None


def _extack(tlvs: bytes) -> dict[str | int, Any]:
    out: dict[str | int, Any] = {}
    for ra in N.kernel_attrs(tlvs, 0, len(tlvs))[0]:
        v = tlvs[ra.start:ra.end]
        if ra.type == N.NLMSGERR_ATTR_MSG:
            out["msg"] = v.split(b"\0")[0].decode(errors="replace")
        elif ra.type in (N.NLMSGERR_ATTR_OFFS, N.NLMSGERR_ATTR_MISS_TYPE,
                         N.NLMSGERR_ATTR_MISS_NEST) and len(v) >= 4:
            out[ra.type] = struct.unpack_from("=I", v)[0]
        elif ra.type == N.NLMSGERR_ATTR_POLICY:
            out["policy"] = _policy(bytes(v))
    return out


ATTR_TYPES = ["invalid", "flag", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "binary",
              "string", "nul-string", "nested", "nested-array", "bitfield32", "sint", "uint"]


def _policy(nest: bytes) -> str:
    """NLMSGERR_ATTR_POLICY as a person reads it: ``u8 in 0..2``, ``binary of 4..16 bytes``."""
    f: dict[int, int] = {}
    for ra in N.kernel_attrs(nest, 0, len(nest))[0]:
        v = nest[ra.start:ra.end]
        if len(v) == 8:
            f[ra.type] = struct.unpack_from("=q" if ra.type == N.NL_POLICY_TYPE_ATTR_MIN_VALUE_S
                                            or ra.type == N.NL_POLICY_TYPE_ATTR_MAX_VALUE_S
                                            else "=Q", v)[0]
        elif len(v) == 4:
            f[ra.type] = struct.unpack_from("=I", v)[0]
    t = f.get(N.NL_POLICY_TYPE_ATTR_TYPE, 0)
    text = ATTR_TYPES[t] if t < len(ATTR_TYPES) else f"type {t}"
    for lo, hi in ((N.NL_POLICY_TYPE_ATTR_MIN_VALUE_S, N.NL_POLICY_TYPE_ATTR_MAX_VALUE_S),
                   (N.NL_POLICY_TYPE_ATTR_MIN_VALUE_U, N.NL_POLICY_TYPE_ATTR_MAX_VALUE_U)):
        if lo in f or hi in f:
            text += f" in {f.get(lo, '…')}..{f.get(hi, '…')}"
            break
    lmin, lmax = f.get(N.NL_POLICY_TYPE_ATTR_MIN_LENGTH), f.get(N.NL_POLICY_TYPE_ATTR_MAX_LENGTH)
    if lmin is not None or lmax is not None:
        text += f" of {lmin or 0}..{lmax if lmax is not None else '…'} bytes"
    return text


def _error(proto: int, buf: Buffer, hdr: N.Header, requests: dict[Any, bytes], key: Any,
           undelivered: bytes | None,
           ext_ack: bool | None) -> str:
    start, end = hdr.offset + N.NLMSG_HDRLEN, hdr.offset + hdr.len
    if end - start < 20:
        return "NLMSG_ERROR <truncated>"
    (err,) = struct.unpack_from("=i", buf, start)
    req_len, req_type, _, req_seq, req_pid = N.HDR.unpack_from(buf, start + 4)
    capped = bool(hdr.flags & 0x100)                     # NLM_F_CAPPED
    echoed = N.NLMSG_HDRLEN if capped else req_len
    tlv_at = start + 4 + ((max(echoed, N.NLMSG_HDRLEN) + 3) & ~3)
    tlvs = bytes(buf[tlv_at:end]) if tlv_at < end else b""
    request = requests.get((key, req_seq)) if capped or tlv_at > end else \
        bytes(buf[start + 4:start + 4 + req_len])
    what = "ack" if err == 0 else f"error {_errno_name(err)}"
    answers = type_name(proto, req_type)
    if proto == NETLINK_GENERIC and request and len(request) > N.NLMSG_HDRLEN:
        answers += " " + body(proto, request, N.split_messages(request)[0], True)[0]
    line = f"NLMSG_ERROR {what} for {answers} seq={req_seq} port={hdr.pid}"
    info, delivered = _extack(tlvs), True
    if not info and undelivered:
        info, delivered = _extack(undelivered), False
    parts = []
    if "msg" in info:
        parts.append(f'"{info["msg"]}"')
    off = info.get(N.NLMSGERR_ATTR_OFFS)
    if off is not None:
        where = attr_at(proto, request, off) if request else None
        parts.append(f"at offset {off}" + (f" ({where})" if where else ""))
    for t, label in ((N.NLMSGERR_ATTR_MISS_TYPE, "missing attribute"),
                     (N.NLMSGERR_ATTR_MISS_NEST, "in nest")):
        if t in info:
            parts.append(f"{label} {info[t]}")
    if "policy" in info:
        parts.append(f"policy: {info['policy']}")
    if parts:
        line += "; extack: " + ", ".join(parts)
        if not delivered:
            line += " (not delivered: the socket did not set NETLINK_EXT_ACK)"
    elif err and ext_ack is False:
        line += "; no extack (the socket did not set NETLINK_EXT_ACK)"
    return line


def describe(proto: int, datagram: bytes, *, to_kernel: bool = True,
             requests: dict[Any, bytes] | None = None, key: Any = None,
             undelivered: bytes | None = None,
             ext_ack: bool | None = None) -> list[str]:
    """One line per message: type name, flags, seq, pid, a summary and the attributes by
    name. ``requests`` maps (key, seq) → request bytes, to explain capped errors."""
    if datagram[:4] == b"\0\0\0\0":
        return [f"<control frame, {len(datagram)} bytes>"]
    try:
        hdrs = N.split_messages(datagram)
    except DecodeError as e:
        return [f"<undecodable: {e}>"]
    lines = []
    for hdr in hdrs:
        if hdr.type == N.NLMSG_ERROR:
            lines.append(_error(proto, datagram, hdr, requests or {}, key, undelivered,
                                ext_ack))
            continue
        head = f"{type_name(proto, hdr.type)} flags=0x{hdr.flags:x} seq={hdr.seq} pid={hdr.pid}"
        if hdr.type == N.NLMSG_DONE and hdr.len >= N.NLMSG_HDRLEN + 4:
            (err,) = struct.unpack_from("=i", datagram, hdr.offset + N.NLMSG_HDRLEN)
            lines.append(head + (f" error {_errno_name(err)}" if err else ""))
            continue
        if hdr.type < N.NLMSG_MIN_TYPE:
            lines.append(head)
            continue
        try:
            summary, attrs, _, _ = body(proto, datagram, hdr, to_kernel)
        except (DecodeError, ValueError, IndexError, struct.error) as e:
            summary, attrs = f"<undecodable: {e}>", []
        lines.append(head + (f" {summary}" if summary else "")
                     + (f" [{', '.join(attrs)}]" if attrs else ""))
    return lines


def print_trace(path: str, out: TextIO) -> int:
    requests: dict[Any, bytes] = {}
    with (sys.stdin if path == "-" else open(path)) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            data = bytes.fromhex(rec["data"])
            key = (rec["netns"], rec["sock"])
            if rec["dir"] == "tx" and len(data) >= 16 and data[:4] != b"\0\0\0\0":
                for hdr in N.split_messages(data) if _splits(data) else []:
                    requests[(key, hdr.seq)] = bytes(data[hdr.offset:hdr.offset + hdr.len])
                if len(requests) > 4096:                  # keep the recent ones
                    for k in list(requests)[:2048]:
                        del requests[k]
            arrow = {"tx": "→", "rx": "←", "event": "⇐"}.get(rec["dir"], "?")
            note = rec.get("extack_not_delivered")
            for desc in describe(rec["proto"], data, to_kernel=rec["dir"] == "tx",
                                 requests=requests, key=key,
                                 undelivered=bytes.fromhex(note) if note else None,
                                 ext_ack=rec.get("ext_ack")):
                out.write(f"{rec['t']:.6f} {rec['netns']} sock{rec['sock']} {arrow} {desc}\n")
    return 0


def _splits(data: bytes) -> bool:
    try:
        N.split_messages(data)
        return True
    except DecodeError:
        return False


__all__ = ["TraceWriter", "print_trace", "describe", "NETLINK_XFRM"]
