"""Messages as a person reads them (``repr`` of a decoded :class:`~netlink_codec.message.Message`):
type and attribute names, addresses as addresses, NUL-padded names as text, all-ones
limits as ``inf`` — instead of 16-byte buffers."""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .message import Message

AF_INET, AF_INET6 = 2, 10
U64_INF = (1 << 64) - 1


def _address(raw: bytes, family: int | None) -> str:
    if family == AF_INET or (family is None and not any(raw[4:])):
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw[:16]))


def value(v: Any, key: str = "", family: int | None = None) -> str:
    if isinstance(v, dict):
        family = v.get("family", family)
        return "{" + ", ".join(f"{k}={value(x, k, family)}" for k, x in v.items()) + "}"
    if hasattr(v, "as_dict"):
        return value(v.as_dict(), key, family)
    if isinstance(v, (bytes, bytearray)):
        raw = bytes(v)
        if len(raw) == 16 and "addr" in key:
            return _address(raw, family)
        text = raw.rstrip(b"\0").decode("ascii", "replace")
        if text and text.isprintable():
            return repr(text)
        return raw.hex() if len(raw) <= 16 else raw[:16].hex() + f"…({len(raw)} bytes)"
    if isinstance(v, int) and v == U64_INF:
        return "inf"
    if key == "spi" and isinstance(v, int):
        return f"0x{v:08x}"
    if isinstance(v, list):
        return "[" + ", ".join(value(x, key, family) for x in v) + "]"
    return repr(v)


ERR_ATTRS = {1: "extack", 2: "offset", 3: "cookie", 4: "policy", 5: "miss_type",
             6: "miss_nest"}


def message(msg: Message) -> str:
    try:
        return _message(msg)
    except Exception:  # noqa: BLE001 - a repr never raises
        return f"<type {msg.type} seq={msg.seq} pid={msg.pid} flags=0x{msg.flags:x}>"


def _message(msg: Message) -> str:
    fam = getattr(msg, "family", None)
    name = fam.type_name(msg.type) if fam is not None else f"type {msg.type}"
    parts = [name, f"seq={msg.seq}", f"pid={msg.pid}"]
    if msg.flags:
        parts.append(f"flags=0x{msg.flags:x}")
    fixed = msg.fixed
    family = None
    if hasattr(fixed, "as_dict"):
        d = fixed.as_dict()
        family = d.get("family") or (d.get("sel") or {}).get("family") or None
        if "error" in d:                                 # NLMSG_ERROR: the errno, not the echo
            parts.append(f"error={d['error']}")
        else:
            parts.append(value(d, "", family)[1:-1])
    elif fixed:
        parts.append(f"fixed={value(fixed)}")
    space = fam._space(msg.type, msg.flags) if fam is not None and msg.type >= 16 else None
    for a in msg.attrs:
        aname = (space.attr_name(a.type) if space else
                 ERR_ATTRS.get(a.type, f"attr{a.type}") if msg.type < 16 else f"attr{a.type}")
        parts.append(f"{aname}={value(a.value, aname.lower(), family)}")
    return "<" + " ".join(parts) + ">"
