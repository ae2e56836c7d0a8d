"""The argument helpers of iproute2's lib/utils.c and include/utils.h, as `ip` 6.1 behaves.

A command is parsed from a :class:`Argv` cursor that mirrors ``argc``/``argv`` and the
NEXT_ARG / NEXT_ARG_OK / PREV_ARG macros. Where ``ip`` prints a message and exits, these
helpers raise :class:`IpExit` carrying the exact stderr text and exit status, so the
replayer can print it and go on with the next line.
"""
from __future__ import annotations

import ipaddress
import socket

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
ULONG_MAX = (1 << 64) - 1


class IpExit(Exception):
    """``ip`` would print ``stderr`` and exit with ``status`` (255 for exit(-1))."""

    def __init__(self, stderr: str, status: int):
        super().__init__(stderr)
        self.stderr = stderr
        self.status = status & 0xFF


def incomplete_command():
    raise IpExit('Command line is not complete. Try option "help"\n', -1)


def missarg(key: str):
    raise IpExit(f'Error: argument "{key}" is required\n', -1)


def invarg(msg: str, arg: str):
    raise IpExit(f'Error: argument "{arg}" is wrong: {msg}\n', -1)


def duparg(key: str, arg: str):
    raise IpExit(f'Error: duplicate "{key}": "{arg}" is the second value.\n', -1)


def duparg2(key: str, arg: str):
    raise IpExit(f'Error: either "{key}" is duplicate, or "{arg}" is a garbage.\n', -1)


def die(msg: str, status: int = 1):
    raise IpExit(msg, status)


class Argv:
    """``argc``/``argv`` as the C code walks them: ``cur`` is ``*argv``, ``argc`` counts the
    remaining words including the current one."""

    def __init__(self, words: list[str], start: int = 0):
        self.words = words
        self.i = start

    @property
    def argc(self) -> int:
        return len(self.words) - self.i

    @property
    def cur(self) -> str:
        return self.words[self.i]

    def next(self) -> str:
        """NEXT_ARG()"""
        self.i += 1
        if self.argc <= 0:
            incomplete_command()
        return self.cur

    def next_ok(self) -> bool:
        """NEXT_ARG_OK()"""
        return self.argc - 1 > 0

    def prev(self) -> None:
        """PREV_ARG()"""
        self.i -= 1

    def advance(self) -> None:
        """``argc--; argv++`` at the end of a parse loop."""
        self.i += 1


def matches(prefix: str, word: str) -> bool:
    """``matches(prefix, word) == 0`` of utils.c: ``prefix`` is a non-empty prefix of ``word``."""
    return 0 < len(prefix) <= len(word) and word.startswith(prefix)


def strtoul(s: str, base: int = 0) -> tuple[int, str, bool]:
    """C ``strtoul``: (value, rest, overflowed). Leading blanks and a sign are accepted; a
    negative number wraps as in C; no digits gives (0, s, False) with ``rest is s``."""
    i, n = 0, len(s)
    while i < n and s[i] in " \t\n\r\f\v":
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    if base in (0, 16) and s[i:i + 2].lower() == "0x" and i + 2 < n and \
            s[i + 2].lower() in "0123456789abcdef":
        i += 2
        base = 16
    elif base == 0:
        base = 8 if s[i:i + 1] == "0" else 10
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    j = i
    while j < n and s[j].lower() in digits:
        j += 1
    if j == i:
        return 0, s, False
    v = int(s[i:j], base)
    over = v > ULONG_MAX
    if over:
        v = ULONG_MAX
    elif neg:
        v = (-v) & ULONG_MAX
    return v, s[j:], over


def _get_uint(arg: str, base: int, limit: int) -> int | None:
    if not arg:
        return None
    v, rest, over = strtoul(arg, base)
    if rest is arg or rest or over or v > limit:
        return None
    return v


def get_u64(arg: str, base: int = 0):
    return _get_uint(arg, base, ULONG_MAX)


def get_u32(arg: str, base: int = 0):
    return _get_uint(arg, base, 0xFFFFFFFF)


def get_u16(arg: str, base: int = 0):
    return _get_uint(arg, base, 0xFFFF)


def get_u8(arg: str, base: int = 0):
    return _get_uint(arg, base, 0xFF)


get_unsigned = get_u32


class Prefix:
    """``inet_prefix``: family, 16 bytes of address data, bit length (-1: none given,
    -2: default/any), byte length."""
    __slots__ = ("family", "data", "bitlen", "bytelen")

    def __init__(self, family=AF_UNSPEC, data=b"", bitlen=0, bytelen=0):
        self.family, self.data, self.bitlen, self.bytelen = family, data.ljust(16, b"\0"), bitlen, bytelen


def _ipv4(cp: str) -> bytes | None:
    """get_addr_ipv4: each part through strtoul(…, 0), so "010" is octal and "0x7f" hex."""
    out = []
    for i in range(4):
        v, rest, _ = strtoul(cp, 0)
        if v > 255 or rest is cp:
            return None
        out.append(v)
        if rest == "":
            break
        if i == 3 or rest[0] != ".":
            return None
        cp = rest[1:]
    return bytes(out).ljust(4, b"\0")


def get_addr_1(name: str, family: int) -> Prefix | None:
    if name == "default":
        return Prefix(family, b"", -2, {AF_INET: 4, AF_INET6: 16}.get(family, 0))
    if name in ("all", "any"):
        return Prefix(family, b"", -2, 0)
    if ":" in name:
        if family not in (AF_UNSPEC, AF_INET6):
            return None
        try:
            return Prefix(AF_INET6, socket.inet_pton(socket.AF_INET6, name), -1, 16)
        except OSError:
            return None
    if family not in (AF_UNSPEC, AF_INET):
        return None
    raw = _ipv4(name)
    return None if raw is None else Prefix(AF_INET, raw, -1, 4)


def _mask2bits(raw: bytes) -> int:
    v = int.from_bytes(raw, "big")
    bits = bin(v).count("1")
    return bits if v == ((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF) else -1


def get_prefix_1(arg: str, family: int) -> Prefix | None:
    addr_s, slash, plen_s = arg.partition("/")
    p = get_addr_1(addr_s, family)
    if p is None:
        return None
    bitlen = {AF_INET: 32, AF_INET6: 128}.get(p.family, 0)
    if slash:
        if p.bitlen == -2:
            return None
        plen = get_unsigned(plen_s)
        if plen is None:
            m = get_addr_1(plen_s, AF_INET)
            b = _mask2bits(m.data[:4]) if m is not None and m.family == AF_INET else -1
            if b < 0:
                return None
            plen = b
        if plen > bitlen:
            return None
        bitlen = plen
    elif p.bitlen == -2:
        bitlen = 0
    p.bitlen = bitlen
    return p


def family_name_verbose(family: int) -> str:
    return {AF_UNSPEC: "any valid", AF_INET: "inet", AF_INET6: "inet6"}.get(family, "???")


def get_prefix(arg: str, family: int) -> Prefix:
    p = get_prefix_1(arg, family)
    if p is None:
        die(f'Error: {family_name_verbose(family)} prefix is expected rather than "{arg}".\n')
    return p


def get_addr(arg: str, family: int) -> Prefix:
    p = get_addr_1(arg, family)
    if p is None:
        die(f'Error: {family_name_verbose(family)} address is expected rather than "{arg}".\n')
    return p


def addr_n2a(family: int, raw: bytes) -> str:
    """rt_addr_n2a for the families xfrm prints."""
    if family == AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return "???"
