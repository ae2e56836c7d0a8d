"""docs/ci.md: the workflow and the shell recipe are the same steps,
start nothing by hand and run the tests under CI=true through the plugin."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from .conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(lang: str) -> list[str]:
    text = open(os.path.join(ROOT, "docs", "ci.md")).read()
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _workflow_commands() -> list[str]:
    (yml,) = _blocks("yaml")
    cmds, in_run = [], False
    for line in yml.splitlines():
        m = re.match(r"\s+run: (\|)?(.*)", line)
        if m:
            in_run = m.group(1) == "|"
            if not in_run:
                cmds.append(m.group(2))
        elif in_run and line.startswith(" " * 10):
            cmds.append(line.strip())
        else:
            in_run = False
    return cmds


def test_the_workflow_and_the_recipe_are_the_same_steps():
    (recipe,) = _blocks("sh")
    steps = [ln for ln in recipe.splitlines() if ln and ln != "set -eu"]
    assert [c.removeprefix("sudo ") for c in _workflow_commands()] == steps
    assert steps[-1].startswith("CI=true ") and "pytest" in steps[-1]
    assert not any(re.search(r"xfrmd (serve|run)|LD_PRELOAD|conftest", s) for s in steps)
    # xfrmd installed with its test extras from a path a user has (a checkout or a wheel)
    assert '.venv/bin/pip install "$XFRMD[test]"' in steps
    assert "XFRMD=${XFRMD:-third_party/xfrmd}" in steps
    assert not re.search(r"REPOSITORY-URL|git\+", open(os.path.join(ROOT, "docs", "ci.md")).read())


# -- the shell recipe, run -------------------------------------------------------------------

_TEST = '''
from xfrmd.testing import assert_offloaded


def test_ip_talks_to_the_emulated_kernel(xfrmd_server):
    out = xfrmd_server.run(["ip", "-br", "link", "show", "nsim0"], check=True).stdout
    assert out.startswith("nsim0")


def test_charon_offloads_to_netdevsim(kernel_pair, charon):
    kp = kernel_pair(device_kind="netdevsim")
    left = charon(kp, "left", hw_offload="yes", esp_proposals="aes128gcm16")
    charon(kp, "right", hw_offload="yes", esp_proposals="aes128gcm16")
    assert "initiate completed successfully" in left.initiate().stdout
    assert_offloaded(kp, "left", "veth-l", "crypto")
'''


def _packages_installed(pkgs: list[str]) -> bool:
    if not shutil.which("dpkg-query"):
        return False
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}\\n", *pkgs], capture_output=True,
                       text=True)
    return p.returncode == 0 and all(ln.endswith(" installed") for ln in p.stdout.splitlines())


def _runnable_recipe() -> tuple[str, list[str]]:
    """The recipe as a script for this machine: the apt-get and systemctl lines (which change
    the host) become a check that their packages are there; every other line as written."""
    (recipe,) = _blocks("sh")
    lines, pkgs = [], []
    for line in recipe.splitlines():
        if line.startswith("apt-get install"):
            pkgs = [w for w in line.split()[2:] if not w.startswith("-")]
            lines.append("dpkg-query -W " + " ".join(pkgs) + " >/dev/null")
        elif line.startswith(("apt-get", "systemctl")):
            continue
        else:
            lines.append(line)
    return "\n".join(lines) + "\n", pkgs


@pytest.mark.slow   # a fresh venv, pip install from the package index: ~30-90 s
def test_the_shell_recipe_runs_end_to_end(tmp_path):
    """A user's repository in a temporary directory, xfrmd copied in at the recipe's default
    `third_party/xfrmd`, the recipe run as root: it installs xfrmd and pytest into a fresh
    venv made from the system interpreter and runs a charon offload test through the
    plugin, under CI=true."""
    script, pkgs = _runnable_recipe()
    require(os.geteuid() == 0, "the recipe runs as root (network namespaces)")
    require(_packages_installed(pkgs), "the recipe's Debian packages")
    require(shutil.which("charon") or os.path.exists("/usr/lib/ipsec/charon"),
            "strongswan-charon")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo / "third_party" / "xfrmd", ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".hypothesis", ".cache"))
    (repo / "tests" / "offload").mkdir(parents=True)
    (repo / "tests" / "offload" / "test_offload.py").write_text(_TEST)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "XFRMD_SOCKET", "XFRMD",
                        "PYTEST_ADDOPTS", "XFRMD_NETNS")}
    active = os.environ.get("VIRTUAL_ENV")
    if active:
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if not p.startswith(active))
    # the system interpreter first, as on a fresh runner
    env["PATH"] = "/usr/bin:" + env["PATH"]
    p = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert re.search(r"\b2 passed\b", p.stdout), p.stdout[-3000:]
    assert os.path.exists(repo / ".venv" / "bin" / "pytest")
