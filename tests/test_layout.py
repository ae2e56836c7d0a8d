"""Every struct the codec declares has the size and field offsets gcc gives the system's
<linux/xfrm.h> (compiled here; fails rather than skips in CI)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

from netlink_codec import xfrm as X

from .conftest import require

NETLINK = {"struct nlmsghdr": None, "struct nlmsgerr": None, "struct nlattr": None}


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


def test_struct_layouts_match_linux_xfrm_h(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    require(cc is not None, "needs gcc")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/xfrm.h>",
             "int main(void) {"]
    expected = []
    for cname, cls in X.C_NAMES.items():
        lines.append(f'printf("%zu\\n", sizeof({cname}));')
        expected.append(ctypes.sizeof(cls))
        back = {py: c for (cn, c), py in X.C_FIELD_ALIASES.items() if cn == cname}
        for path, off in _fields(cls):
            cpath = ".".join(back.get(p, p) for p in path.split("."))
            lines.append(f'printf("%zu\\n", offsetof({cname}, {cpath}));')
            expected.append(off)
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    p = subprocess.run([cc, "-o", str(exe), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    got = [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True,
                                          check=True).stdout.split()]
    labels = []
    for cname, cls in X.C_NAMES.items():
        labels.append(f"sizeof({cname})")
        labels += [f"offsetof({cname}, {p})" for p, _ in _fields(cls)]
    mismatches = [(l, e, g) for l, e, g in zip(labels, expected, got) if e != g]
    assert not mismatches
    assert len(got) == len(expected) > 150
