"""mypy on the typed parts of the tree, with the settings of pyproject.toml ([tool.mypy]):
strict on the pure codec, every function annotated in the kernel model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["netlink_codec", "xfrmd/xfrm", "xfrmd/rtnl", "devices", "bonding", "xfrmd/inet"]
# folders still being annotated: checked, and their result reported, but not yet required
PENDING: set[str] = set()


@pytest.mark.parametrize("folder", FOLDERS)
def test_mypy_is_clean(folder):
    pytest.importorskip("mypy")
    if folder in PENDING and not os.environ.get("XFRMD_MYPY_ALL"):
        pytest.skip(f"{folder}: annotations in progress")
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", folder],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
