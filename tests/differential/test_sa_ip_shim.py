"""Real `ip` 6.1 through the preload shim against xfrmd (module set of this machine: no
ESP/AH/IPComp types, its crypto algorithms, set with `xfrmd ctl`), and on the real kernel in a
fresh netns: the same `ip xfrm state` lines print the same stdout/stderr/status."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.differential.test_sa_ip_text import _lines
from tests.differential.test_sa_validation import MISSING_HERE
from tests.replay.realip import RealNetns, have_tools

pytestmark = pytest.mark.netns
XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def test_real_ip_through_the_shim_matches_the_kernel(tmp_path):
    require(have_tools(), "needs root and ip")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")
    ctl = " ".join(XFRMD) + " ctl"
    setup = [f"{ctl} xfrm-type esp off", f"{ctl} xfrm-type ah off", f"{ctl} xfrm-type comp off",
             f"{ctl} crypto-alg off " + " ".join(f"'{n}'" for n in sorted(MISSING_HERE))]
    quoted = [" ".join(shlex.quote(w) for w in shlex.split(c)) for c in _lines()]
    body = "\n".join(f"ip {c}; echo \"== $?\"; echo '==' >&2" for c in quoted) + "\n"
    emu_script = tmp_path / "emu.sh"
    emu_script.write_text("set -e\n" + "\n".join(setup) + "\nset +e\n" + body)
    real_script = tmp_path / "real.sh"
    real_script.write_text(body)
    emu = subprocess.run(XFRMD + ["run", "--topology", "bare", "--", "sh", str(emu_script)],
                         capture_output=True, text=True, timeout=120)
    ns = RealNetns()
    try:
        real = ns.run_in(["sh", str(real_script)])
    finally:
        ns.close()
    assert emu.stderr.split("==\n") == real.stderr.split("==\n")
    assert emu.stdout.split("== ") == real.stdout.split("== ")
