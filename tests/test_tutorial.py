"""docs/tutorial.md, run as written, by a pytest in a directory outside the repository that
finds xfrmd's plugin only through its ``pytest11`` entry point."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tutorial_code() -> str:
    text = open(os.path.join(ROOT, "docs", "tutorial.md")).read()
    return "\n\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


PROBE = ("import importlib.metadata as m, xfrmd.testing; "
         "print(any(e.value == 'xfrmd.testing' for e in m.entry_points(group='pytest11')))")


def _outside_env(tmp_path) -> dict:
    """The environment of a pytest run outside the repository that finds xfrmd's plugin
    only through its entry point: xfrmd as installed (CI: tools/test-all.sh's venv); from a
    bare checkout (PYTHONPATH), the checkout plus a dist-info whose entry_points.txt is
    made from pyproject.toml's declaration — what pip would install."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    if probe.stdout.strip() == "True":
        return env
    import tomllib
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    site = tmp_path / "site"
    info = site / f"xfrmd-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: xfrmd\n"
                                   f"Version: {project['version']}\n")
    (info / "entry_points.txt").write_text("[pytest11]\n" + "".join(
        f"{k} = {v}\n" for k, v in project["entry-points"]["pytest11"].items()))
    return dict(env, PYTHONPATH=os.pathsep.join([str(site), ROOT]))


def test_the_tutorials_tests_pass_through_the_entry_point(tmp_path):
    require(os.geteuid() == 0, "needs root for network namespaces")
    code = tutorial_code()
    assert code.count("\ndef test_") + code.startswith("def test_") == 4
    env = _outside_env(tmp_path)
    (tmp_path / "test_offload.py").write_text(code)
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                        "test_offload.py"], cwd=tmp_path, env=dict(env, CI="true"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
    plugins = next(ln for ln in p.stdout.splitlines() if ln.startswith("plugins:"))
    assert re.search(r"\bxfrmd-\d", plugins), plugins       # loaded as an installed plugin
    assert re.search(r"\b4 passed\b", p.stdout), p.stdout[-2000:]
    assert not os.path.exists(tmp_path / "conftest.py")


def test_the_plugin_loads_by_entry_point_outside_the_repo(tmp_path):
    """No conftest, no pytest_plugins: the fixtures are there, the marker is registered,
    and xfrmd_server runs on the default topology with a working env."""
    env = _outside_env(tmp_path)
    (tmp_path / "test_plugin.py").write_text('''
import os, subprocess
import pytest

def test_default_topology(xfrmd_server):
    assert set(xfrmd_server.env) == {"XFRMD_SOCKET", "XFRMD_NETNS", "LD_PRELOAD"}
    p = xfrmd_server.run(["ip", "-o", "link", "show"], check=True)
    assert "nsim0" in p.stdout and "bond1" in p.stdout

@pytest.mark.xfrmd_topology("bare")
def test_bare(xfrmd_server, xfrmd_env):
    p = subprocess.run(["ip", "-o", "link", "show"], env=xfrmd_env, capture_output=True,
                       text=True, check=True)
    assert p.stdout.count("\\n") == 1 and "lo:" in p.stdout

def test_in_process_kernel(xfrmd_kernel):
    assert xfrmd_kernel.netns("default").links.by_name("nsim0") is not None
''')
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error::pytest.PytestAssertRewriteWarning",
                        "--strict-markers", "test_plugin.py"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert re.search(r"\b3 passed\b", p.stdout)
    assert "PytestAssertRewriteWarning" not in p.stdout + p.stderr
