"""Golden scripts under tests/replay/golden: each NAME.ip is replayed against a private
xfrmd server (topology `default` unless the script's first line says `# topology: X`) and
must print exactly NAME.golden. Goldens whose name ends in ``.kernel.golden`` were recorded
from the real Linux kernel (`xfrmd replay --kernel`, in a fresh netns) and are re-checked
against it here, so the emulator is compared with the kernel and the golden cannot go stale.

Regenerate a golden with: xfrmd replay tests/replay/golden/NAME.ip --record …/NAME.golden
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from xfrmd.replay.runner import Backend, compare_golden, run_script
from xfrmd.testing import make_kernel, running_server

from .conftest import require
from .replay.realip import RealNetns, have_tools

GOLDEN = pathlib.Path(__file__).parent / "replay" / "golden"
SCRIPTS = sorted(GOLDEN.glob("*.ip"))


def _golden_for(script: pathlib.Path) -> pathlib.Path:
    k = script.with_suffix(".kernel.golden")
    return k if k.exists() else script.with_suffix(".golden")


def _topology(script: pathlib.Path) -> str:
    first = script.read_text().splitlines()[0]
    return first.split(":", 1)[1].strip() if first.startswith("# topology:") else "default"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_golden_against_xfrmd(script):
    golden = _golden_for(script)
    assert golden.exists(), f"no golden for {script.name}"
    with running_server(make_kernel(_topology(script))) as srv:
        b = Backend(path=srv.path)
        try:
            results = list(run_script(b, script.read_text()))
        finally:
            b.close()
    assert compare_golden(results, golden.read_text()) == []


KERNEL_SCRIPTS = [s for s in SCRIPTS if s.with_suffix(".kernel.golden").exists()]


@pytest.mark.parametrize("script", KERNEL_SCRIPTS, ids=[s.stem for s in KERNEL_SCRIPTS])
def test_kernel_golden_still_matches_linux(script):
    require(have_tools(), "needs root and ip netns")
    ns = RealNetns()
    try:
        p = ns.run_in([sys.executable, "-m", "xfrmd.cli", "replay", "--kernel", "--expect",
                       str(script.with_suffix(".kernel.golden")), str(script)])
    finally:
        ns.close()
    assert p.returncode == 0, p.stderr
