"""Every struct the codec declares has the size and field offsets gcc gives the system's
<linux/xfrm.h>, <linux/netlink.h>, <linux/genetlink.h> and the rtnetlink headers (compiled
here; fails rather than skips in CI), and the flat ``struct`` formats derived from those declarations — the ones the
hot paths use — read and write the same bytes the declarations do."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess

import pytest

from netlink_codec import genl as G
from netlink_codec import netlink as N
from netlink_codec import rtnl as R
from netlink_codec import xfrm as X
from netlink_codec.cstruct import be16, be32, struct_format
from xfrmd.rtnl import addr, link, neigh, route, rule
from xfrmd.xfrm import acquire, migrate, policy, sa_verify, state

from .conftest import require

RTNETLINK_H = "linux/rtnetlink.h linux/if_addr.h linux/fib_rules.h linux/neighbour.h linux/netconf.h"
HEADERS = {"linux/xfrm.h": X.C_NAMES, "linux/netlink.h": N.C_NAMES,
           "linux/genetlink.h": G.C_NAMES, RTNETLINK_H: R.C_NAMES}
ALIASES = {**X.C_FIELD_ALIASES, **R.C_FIELD_ALIASES}
ALL = {cname: cls for names in HEADERS.values() for cname, cls in names.items()}


def _fields(cls, prefix=""):
    """(C field path, offset) of a ctypes struct, descending into nested structs (not
    unions: xfrm_address_t is checked as a whole)."""
    out = []
    for name, typ, *_ in cls._fields_:
        off = getattr(cls, name).offset
        out.append((prefix + name, off))
        if isinstance(typ, type) and issubclass(typ, ctypes.Structure):
            out += [(p, off + o) for p, o in _fields(typ, prefix + name + ".")]
    return out


def _gcc_layouts(tmp_path, headers: str, c_names: dict) -> tuple[list[str], list[int], list[int]]:
    """(labels, what the declarations say, what gcc says) of every sizeof and offsetof."""
    cc = shutil.which("gcc") or shutil.which("cc")
    require(cc is not None, "needs gcc")
    lines = ["#include <stdio.h>", "#include <stddef.h>",
             *(f"#include <{h}>" for h in headers.split()), "int main(void) {"]
    labels, expected = [], []
    for cname, cls in c_names.items():
        lines.append(f'printf("%zu\\n", sizeof({cname}));')
        labels.append(f"sizeof({cname})")
        expected.append(ctypes.sizeof(cls))
        back = {py: c for (cn, c), py in ALIASES.items() if cn == cname}
        for path, off in _fields(cls):
            cpath = ".".join(back.get(p, p) for p in path.split("."))
            lines.append(f'printf("%zu\\n", offsetof({cname}, {cpath}));')
            labels.append(f"offsetof({cname}, {path})")
            expected.append(off)
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    p = subprocess.run([cc, "-o", str(exe), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    got = [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True,
                                          check=True).stdout.split()]
    return labels, expected, got


def test_struct_layouts_match_linux_xfrm_h(tmp_path):
    labels, expected, got = _gcc_layouts(tmp_path, "linux/xfrm.h", X.C_NAMES)
    mismatches = [(l, e, g) for l, e, g in zip(labels, expected, got) if e != g]
    assert not mismatches
    assert len(got) == len(expected) > 150


@pytest.mark.parametrize("header", ["linux/netlink.h", "linux/genetlink.h", RTNETLINK_H])
def test_netlink_struct_layouts_match_the_headers(tmp_path, header):
    labels, expected, got = _gcc_layouts(tmp_path, header, HEADERS[header])
    assert [(l, e) for l, e, g in zip(labels, expected, got) if e != g] == []
    assert len(got) == len(expected) >= 4


def _struct_paths(cls, prefix=""):
    """"" and the dotted path of every nested struct (what keep_padding names)."""
    out = [prefix.rstrip(".")]
    for name, typ, *_ in cls._fields_:
        if issubclass(typ, ctypes.Structure):
            out += _struct_paths(typ, prefix + name + ".")
    return out


def _read(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("cname", sorted(ALL))
def test_derived_struct_formats_read_and_write_what_the_declarations_do(cname):
    cls = ALL[cname]
    raw = os.urandom(ctypes.sizeof(cls))
    decl = cls.from_buffer_copy(raw)
    fmt, names = struct_format(cls)
    assert struct.calcsize(fmt) == ctypes.sizeof(cls)
    values = struct.unpack(fmt, raw)
    assert len(values) == len(names)
    for name, v in zip(names, values):
        field = _read(decl, name)
        if isinstance(v, bytes):
            ftype = dict((n, t) for n, t, *_ in _read_owner(cls, name)._fields_)[name.split(".")[-1]]
            assert v == (field.to_bytes(len(v), "big") if ftype in (be16, be32) else bytes(field))
        else:
            assert v == field, name
    # with every padding byte kept, a round trip through the flat format is byte-exact
    fmt, names = struct_format(cls, keep_padding=_struct_paths(cls))
    assert struct.pack(fmt, *struct.unpack(fmt, raw)) == raw
    # a struct kept whole is one run of bytes
    for path in _struct_paths(cls)[1:]:
        whole_fmt, whole_names = struct_format(cls, whole=[path])
        assert path in whole_names and struct.calcsize(whole_fmt) == ctypes.sizeof(cls)


def _read_owner(cls, path: str):
    for part in path.split(".")[:-1]:
        cls = dict((n, t) for n, t, *_ in cls._fields_)[part]
    return cls


def _expanded(fmt: str) -> list[str]:
    """A format as one code per value or padding byte ("8Q" and "QQQQQQQQ" compare equal)."""
    out = []
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt.lstrip("=")):
        n = int(count or 1)
        out += [f"{n}s"] if code == "s" else [code] * n
    return out


@pytest.mark.parametrize("fmt, cls, kw", [
    (state.USERSA_INFO.format, X.XfrmUsersaInfo, {"whole": ["sel"], "keep_padding": ["id"]}),
    (sa_verify.USERSA_INFO_IN.format, X.XfrmUsersaInfo,
     {"whole": ["sel", "lft", "curlft", "stats"], "keep_padding": ["id"]}),
    (state.USERSA_ID.format, X.XfrmUsersaId, {}),
    (state.REPLAY.format, X.XfrmReplayState, {}),
    (state.ESN_HEAD.format, X.XfrmReplayStateEsn, {}),
    (state.LIFETIME_CFG.format, X.XfrmLifetimeCfg, {}),
    (state.LIFETIME_CUR.format, X.XfrmLifetimeCur, {}),
    (policy.USERPOLICY_INFO.format, X.XfrmUserpolicyInfo, {"whole": ["sel"]}),
    (acquire.TMPL.format, X.XfrmUserTmpl, {}),
    (migrate.MIGRATE.format, X.XfrmUserMigrate, {}),
    (link.IFINFOMSG.format, R.IfInfoMsg, {}),
    (addr.IFADDRMSG.format, R.IfAddrMsg, {}),
    (route.RTMSG.format, R.RtMsg, {}),
    (rule.FIB_RULE_HDR.format, R.FibRuleHdr, {}),
    (neigh.NDMSG.format, R.NdMsg, {}),
    (N.HDR.format, N.NlMsgHdr, {}),
    (N.NLA_HDR.format, N.NlAttr, {}),
    (G.GENL_HDR.format, G.GenlMsgHdr, {}),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_the_hot_paths_struct_formats_are_the_declarations(fmt, cls, kw):
    """The flat formats the model unpacks requests with are the declared layouts."""
    assert _expanded(fmt) == _expanded(struct_format(cls, **kw)[0])
