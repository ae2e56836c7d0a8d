"""The README's quick start: two commands, run as written in a fresh virtual environment made
from the system interpreter, with the dependencies pip picks today."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick_start_commands() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## Quick start"):]
    section = section[:section.index("\n## ", 4)]
    return [line.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quick_start_is_two_commands():
    assert _quick_start_commands() == ["bash tools/install.sh -- xfrmd serve",
                                       "bash tools/test-all.sh"]
    run = open(os.path.join(ROOT, ".ci", "run")).read()
    assert [ln for ln in run.splitlines() if "test-all" in ln] == ["exec bash tools/test-all.sh"]


def _system_python() -> str:
    """Debian's interpreter when there is one (the one a fresh machine has), else ours."""
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _clean_env(tmp_path, **extra) -> dict:
    """The environment of a fresh login: no active venv, our venv's bin off PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "XFRMD_SOCKET")}
    active = os.environ.get("VIRTUAL_ENV")
    if active:
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if not p.startswith(active))
    env.update({"XFRMD_VENV": str(tmp_path / "venv"), "XFRMD_PYTHON": _system_python(), **extra})
    return env


def _debian_packages_installed() -> bool:
    """tools/test-all.sh's apt step would do nothing (so a test may run it)."""
    script = open(os.path.join(ROOT, "tools", "test-all.sh")).read()
    pkgs = re.search(r'^PKGS="([^"]*)"', script, re.M).group(1).split() + ["python3-venv"]
    if not shutil.which("dpkg-query"):
        return False
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}\\n", *pkgs], capture_output=True,
                       text=True)
    return p.returncode == 0 and all(ln.endswith(" installed") for ln in p.stdout.splitlines())


def test_a_failed_install_step_stops_the_script_with_one_line_naming_it(tmp_path):
    require(_debian_packages_installed(), "the Debian packages test-all.sh installs")
    env = _clean_env(tmp_path, XFRMD_PYTHON=str(tmp_path / "no-such-python3"))
    p = subprocess.run(["bash", "tools/test-all.sh", "tests/test_layout.py"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1] == ("test-all.sh: stopped, this step failed: installing "
                                         "xfrmd with its test extras (tools/install.sh)")
    assert "no-such-python3" in p.stderr            # the step's own output says why
    assert "running the test suite" not in p.stdout


@pytest.mark.slow   # a fresh venv and pip install from the package index: ~30-60 s
def test_readme_commands_work_in_a_fresh_venv_from_the_system_python(tmp_path):
    """Command 1 installs and serves (a second server on the busy socket says so in one line,
    with the newest trio pip picks; SIGINT stops it at once, quietly); command 2 installs
    the test extras into the same venv and runs tests with the shim."""
    require(_debian_packages_installed(), "the Debian packages test-all.sh installs")
    sock = str(tmp_path / "xfrmd.sock")
    env = _clean_env(tmp_path, XFRMD_SOCKET=sock)
    serve = subprocess.Popen(["bash", "-c", _quick_start_commands()[0]], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not os.path.exists(sock):
            assert serve.poll() is None, serve.communicate()
            assert time.monotonic() < deadline, "xfrmd serve did not start"
            time.sleep(0.2)
        venv_bin = tmp_path / "venv" / "bin"
        second = subprocess.run([str(venv_bin / "xfrmd"), "serve"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert (second.returncode, second.stderr) == (
            1, f"xfrmd: another server is already listening on {sock}\n")
        t0 = time.monotonic()
        os.killpg(serve.pid, signal.SIGINT)           # what Ctrl-C in its terminal sends
        _, err = serve.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    assert serve.returncode == 0, err
    assert err.splitlines()[-2:] == [f"xfrmd: serving on {sock}", "xfrmd: stopped"]
    assert "Traceback" not in err
    assert took < 1.5
    trio_version = subprocess.run([str(venv_bin / "python"), "-c",
                                   "import trio; print(trio.__version__)"],
                                  capture_output=True, text=True).stdout
    assert trio_version.strip()

    p = subprocess.run(["bash", "-c", _quick_start_commands()[1]
                        + " tests/test_shim_ip.py -k 'exit_status or environment_exported'"],
                       cwd=ROOT, env=dict(env, CI="true"), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert re.search(r"\b2 passed\b", p.stdout), p.stdout[-2000:]
    assert os.path.exists(venv_bin / "pytest")      # the extras went into the same venv


def test_an_active_venv_is_the_one_used(tmp_path):
    """$VIRTUAL_ENV wins over $XFRMD_VENV (and over making .venv); one that is not a venv is
    refused in one line."""
    fake = tmp_path / "active"
    fake.mkdir()
    env = _clean_env(tmp_path, VIRTUAL_ENV=str(fake))
    p = subprocess.run(["bash", "tools/install.sh", "--", "true"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == f"tools/install.sh: {fake} is not a virtual environment (no bin/python)\n"
    assert not (tmp_path / "venv").exists()          # XFRMD_VENV was not made
