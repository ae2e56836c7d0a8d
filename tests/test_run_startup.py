"""``xfrmd run -- CMD`` start-up (goal: ``xfrmd run -- true`` ≤ 0.1 s): before CMD
starts, ``run`` loads neither the kernel model nor trio, the transport's framing, logging
or the userland builder; the model loads when CMD first connects (or after
``xfrmd.run.LOAD_AFTER``); called as the program, run, env and ctl leave with os._exit,
their output flushed first. docs/performance.md "Start-up: `xfrmd run -- CMD`"."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from xfrmd import shim

from .conftest import XFRMD, require_shim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# what `run` must not have loaded when CMD (here: one that never connects) has exited
HEAVY = ("trio", "xfrmd.kernel", "xfrmd.embedded", "xfrmd.server", "xfrmd.transport",
         "xfrmd.userland", "netlink_codec", "logging", "tempfile")

# the grace made long: whatever loads now loads because CMD connected, or not at all
_PROBE = """
import json, sys
import xfrmd.run
xfrmd.run.LOAD_AFTER = 120
from xfrmd.cli import main
rc = main(["run", "--"] + json.loads(sys.argv[1]))
heavy = sorted({m.split(".")[0] if m.split(".")[0] in ("trio", "netlink_codec", "logging")
                else m for m in sys.modules if m.startswith(%r)})
print(json.dumps({"rc": rc, "heavy": heavy}))
""" % (HEAVY,)


def _probe(cmd: list[str], timeout: float = 60) -> dict:
    p = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cmd)], capture_output=True,
                       text=True, cwd=ROOT, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def test_run_true_loads_no_kernel_model():
    require_shim()
    shim.path()                 # built beforehand: building loads the compiler driver
    assert _probe(["true"]) == {"rc": 0, "heavy": []}


def test_the_model_loads_when_cmd_connects():
    """With the grace at 120 s, `ip` is answered because its connect started the load."""
    require_shim("ip")
    got = _probe(["ip", "-br", "link", "show", "dev", "lo"], timeout=60)
    assert got["rc"] == 0
    assert "trio" in got["heavy"] and "xfrmd.kernel" in got["heavy"]


def _unbuffered_off() -> dict[str, str]:
    """The environment without PYTHONUNBUFFERED: stdout into a pipe is block-buffered, so
    output that is not flushed before os._exit is lost."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_env_and_ctl_output_survives_the_quick_exit(tmp_path):
    require_shim()
    sock = str(tmp_path / "x.sock")
    p = subprocess.run(XFRMD + ["env", "--socket", sock], capture_output=True, text=True,
                       env=_unbuffered_off(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:2] == [f"export XFRMD_SOCKET={sock}",
                                         "export XFRMD_NETNS=default"]
    assert p.stdout.splitlines()[2].startswith("export LD_PRELOAD=")
    p = subprocess.run(XFRMD + ["ctl", "help"], capture_output=True, text=True,
                       env=_unbuffered_off(), timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("xfrmd ctl verbs:"), p.stderr
    assert len(p.stdout.splitlines()) > 10


def test_run_exit_status_and_messages_after_the_quick_exit(tmp_path):
    require_shim("sh")
    env = _unbuffered_off()
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c", "kill -TERM $$"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 128 + 15
    missing = str(tmp_path / "no-such-cmd")             # a command that does not exist
    p = subprocess.run(XFRMD + ["run", "--", missing], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 127
    assert p.stderr == f"xfrmd run: {missing}: No such file or directory\n"


def test_the_private_socket_directory_goes_away():
    require_shim("sh")
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c", 'echo "$XFRMD_SOCKET"'],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    sock = p.stdout.strip()
    assert os.path.basename(os.path.dirname(sock)).startswith("xfrmd-")
    assert not os.path.exists(os.path.dirname(sock))


def test_the_shim_name_follows_its_source(tmp_path, monkeypatch):
    """The digest in the shim's name is kept beside the shims built in the cache directory
    (start-up time) and taken again when the source changes: new contents, even of the same
    size, give a new name; a damaged kept digest is taken again."""
    import hashlib
    src, cache = tmp_path / "xfrmd_shim.c", tmp_path / "cache"
    monkeypatch.setattr(shim, "_CANDIDATES", [str(src)])
    monkeypatch.setenv("XFRMD_SHIM_DIR", str(cache))

    def want() -> str:
        d = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
        return str(cache / f"xfrmd_shim-{d}.so")

    src.write_text("int a;\n")
    assert shim.path(build=False) == want()
    assert not cache.exists()                          # nothing built: nothing written
    cache.mkdir()
    open(want(), "w").close()                          # as if built
    assert shim.path(build=False) == want()
    assert (cache / "xfrmd_shim.digest").exists()
    assert shim.path(build=False) == want()            # from the kept digest
    src.write_text("int b;\n")                         # same size, a later mtime
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert shim.path(build=False) == want()
    (cache / "xfrmd_shim.digest").write_bytes(b"\xff garbage")
    assert shim.path(build=False) == want()
