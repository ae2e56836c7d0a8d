"""Shared fixtures. ``xfrmd.testing`` provides xfrmd_server / xfrmd_trio_server."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from xfrmd import userland
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel
from xfrmd.topology import load_topology

# the plugin registers itself through its entry point once xfrmd is installed; this line
# loads it when the tests run from a checkout on PYTHONPATH (a no-op otherwise)
pytest_plugins = ["xfrmd.testing"]

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session", autouse=True)
def xfrmd_command(tmp_path_factory):
    """``xfrmd`` in the tests' shell scripts (``xfrmd ctl``, ``xfrmd replay``) is this
    interpreter's ``xfrmd.cli``, whatever PATH holds: a wrapper goes first on PATH for the
    session. Found on PATH alone, it is the venv's console script only when the venv's bin
    is there, which it is not for an interpreter started by its path without activating
    the venv (the scripts then fail with "sh: xfrmd: not found")."""
    d = tmp_path_factory.mktemp("bin")
    wrapper = d / "xfrmd"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m xfrmd.cli "$@"\n')
    wrapper.chmod(0o755)
    old = os.environ.get("PATH")
    os.environ["PATH"] = f"{d}{os.pathsep}{old if old is not None else os.defpath}"
    yield str(wrapper)
    if old is None:
        os.environ.pop("PATH", None)
    else:
        os.environ["PATH"] = old


def require(condition: bool, why: str) -> None:
    """Skip on a developer's machine when a tool is missing; fail in CI (never skip there)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def closing_fixture(make, available, why: str):
    """A module-scoped fixture: ``make()`` when ``available()`` says this machine can (else
    see :func:`require`), its ``close()`` called after the module's tests."""
    @pytest.fixture(scope="module")
    def resource():
        require(available(), why)
        r = make()
        yield r
        r.close()
    return resource


def require_shim(*tools: str) -> None:
    """The programs tools on PATH and a C compiler for the LD_PRELOAD shim (see require)."""
    for tool in tools:
        require(shutil.which(tool) is not None, f"needs {tool}")
    require(shutil.which("gcc") or shutil.which("cc"), "needs a C compiler for the shim")


def xfrmd_run(script: str, topology=None, *, env=None,
              timeout: int = 60) -> subprocess.CompletedProcess:
    """`xfrmd run [--topology T] -- sh -c script` (T: a topology name or a TOML file's path),
    text output captured."""
    args = XFRMD + ["run"] + (["--topology", str(topology)] if topology is not None else [])
    return subprocess.run(args + ["--", "sh", "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def kernel():
    """A fresh sans-IO kernel on a manual clock, with the `bare` namespace layout."""
    return Kernel(ManualClock(), topology=load_topology("bare"), seed=1)


def require_userland(name: str) -> str:
    """A built, current userland's root (``xfrmd userland build NAME``; tools/test-all.sh
    builds them before the tests): a skip on a developer's machine, a failure under CI."""
    ul = userland.known(name)
    require(userland.is_current(ul), f"needs the userland {name} (xfrmd userland build {name})")
    return ul.path
