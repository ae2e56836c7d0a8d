"""A built wheel carries the preload shim for its platform: installed
where there is no C compiler, `xfrmd run` works."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from .conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                              ".hypothesis", ".pytest_cache")


@pytest.mark.slow   # builds a wheel (pip fetches the build backend): ~10-20 s
def test_a_wheel_runs_the_shim_without_a_compiler(tmp_path):
    require(shutil.which("cc") or shutil.which("gcc"), "needs a C compiler to build the wheel")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").iterdir()
    assert wheel.name.startswith("xfrmd-") and not wheel.name.endswith("-any.whl"), \
        wheel.name                                                   # a platform wheel
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("xfrmd/shim/xfrmd_shim.c") for n in names)
    assert any("xfrmd/shim/xfrmd_shim-" in n and n.endswith(".so") for n in names)
    # the header the extensions share: without it they are not prebuilt, nor built later
    assert any(n.split("/")[-2:] == ["xfrmd", "_slots.h"] for n in names)
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(tmp_path / "site"), str(wheel)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    # no compiler on PATH, an empty shim cache: only the wheel's prebuilt shim can serve
    env = {"PATH": str(empty), "HOME": str(empty), "XFRMD_SHIM_DIR": str(empty),
           "PYTHONPATH": str(tmp_path / "site")}
    p = subprocess.run([sys.executable, "-m", "xfrmd.cli", "run", "--", "/bin/sh", "-c",
                        'echo "$LD_PRELOAD"'], env=env, cwd=empty, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(str(tmp_path / "site" / "xfrmd" / "shim" / "xfrmd_shim-"))
    assert list(empty.iterdir()) == []
