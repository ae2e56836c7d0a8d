"""`xfrmd run --userland NAME|DIR -- CMD`: CMD runs in the userland's root with the host-built
shim, the server's socket, /proc /dev /tmp /run, the current directory; exit status and
signals as without --userland; the cached root is never changed; a non-root user gets a
user namespace or one line saying what is missing."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from xfrmd import userland as U

from .conftest import XFRMD, require, require_userland


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(name, script, *, cwd=None, timeout=60, extra=()):
    return subprocess.run(XFRMD + ["run", *extra, "--userland", name, "--", "sh", "-c", script],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.mark.userland
def test_real_ip_6_15_talks_to_xfrmd_through_the_shim():
    require_userland("trixie-strongswan")
    p = _run("trixie-strongswan", "ip -V; ip -br link show eth2; ip xfrm state add src 192.0.2.1 "
             "dst 198.51.100.1 proto esp spi 0x100 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' "
             "0x0102030405060708091011121314151617181920 128 offload packet dev eth2 dir out "
             "&& ip xfrm state count; echo ns=$XFRMD_NETNS; "
             "echo $LD_PRELOAD")
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith("ip utility, iproute2-6.15.0")
    assert out[1].split()[:2] == ["eth2", "UP"]          # the emulated topology's port
    assert out[2] == "\t SAD count 1"
    assert out[3] == "ns=default"
    assert out[4].startswith("/run/xfrmd/xfrmd_shim-") and out[4].endswith(".so")


@pytest.mark.userland
def test_filesystems_inside():
    root = require_userland("trixie-strongswan")
    p = _run("trixie-strongswan", textwrap.dedent("""\
        set -e
        grep -q trixie /etc/os-release && echo os=trixie
        test -r /proc/self/status && echo proc
        echo x > /dev/null && test -c /dev/urandom && echo dev
        t=$(mktemp /tmp/xfrmd-userland-test.XXXXXX) && echo tmp=$t
        echo hello > /run/marker && cat /run/marker
        touch /etc/xfrmd-userland-test && echo etc-writable
        pwd; test -f pyproject.toml && echo cwd-bound
        test -S "$XFRMD_SOCKET" && echo socket
        """), cwd=REPO)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:3] == ["os=trixie", "proc", "dev"]
    tmpfile = lines[3].split("=", 1)[1]
    assert os.path.exists(tmpfile)        # the host's /tmp, not a private one
    os.unlink(tmpfile)
    assert lines[4:] == ["hello", "etc-writable", REPO, "cwd-bound", "socket"]
    # /run was private and the root is an overlay: nothing reached the host or the cache
    assert not os.path.exists("/run/marker")
    assert not os.path.exists(os.path.join(root, "etc/xfrmd-userland-test"))
    assert not os.path.exists(os.path.join(root, REPO.lstrip("/")))


@pytest.mark.userland
def test_exit_status_and_signals_as_without_userland():
    require_userland("trixie-libreswan")
    assert _run("trixie-libreswan", "exit 7").returncode == 7
    assert _run("trixie-libreswan", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    p = _run("trixie-libreswan", "no-such-command-xfrmd")
    assert p.returncode == 127
    p = subprocess.run(XFRMD + ["run", "--userland", "trixie-libreswan", "--", "no-such-cmd"],
                       capture_output=True, text=True)
    assert p.returncode == 127
    assert p.stderr.startswith("xfrmd run: no-such-cmd: No such file or directory (in ")
    # a signal to `xfrmd run` reaches CMD inside (it trapped it and says so)
    proc = subprocess.Popen(XFRMD + ["run", "--userland", "trixie-libreswan", "--", "sh", "-c",
                                     "trap 'echo got-term; exit 3' TERM; echo ready; "
                                     "while :; do sleep 0.05; done"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 3
    assert proc.stdout.read() == "got-term\n"


@pytest.mark.userland
def test_a_directory_the_user_made():
    root = require_userland("trixie-libreswan")
    p = subprocess.run(XFRMD + ["run", "--userland", root, "--", "/usr/libexec/ipsec/pluto",
                                "--version"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Libreswan 5.2 ")


@pytest.mark.userland
def _timed(cmd):
    t = time.monotonic()
    subprocess.run(XFRMD + ["run", "--userland", "trixie-strongswan", "--", *cmd], check=True)
    return time.monotonic() - t


# ---- as a non-root user ----

# Runs as root: a user namespace mapping root and nobody (so its user.max_user_namespaces is
# ours to set) with a private mount namespace where the userland is visible outside /root
# (0700); then nobody runs enter.py as `xfrmd run --userland` would.
def _as_nobody(root, limit, cmd):
    """`enter.py` run by uid 65534 with user.max_user_namespaces = limit below it, from the
    system's python3 (root's pyenv is out of nobody's reach) and a world-readable copy."""
    require(os.path.exists("/usr/bin/python3"), "needs the system's python3")
    tmp = tempfile.mkdtemp(prefix="xfrmd-nobody-")
    try:
        os.chmod(tmp, 0o755)
        shutil.copy(U.ENTER, tmp)
        return _as_nobody_in(root, tmp, limit, cmd)
    finally:
        shutil.rmtree(tmp)


def _as_nobody_in(root, tmp, limit, cmd):
    helper = os.path.join(tmp, "as_nobody.py")
    with open(helper, "w") as f:
        f.write(textwrap.dedent(f"""\
        import ctypes, os, sys
        ENTER = {os.path.join(tmp, "enter.py")!r}
        root, stage, limit, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
        libc = ctypes.CDLL(None, use_errno=True)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            if libc.unshare(0x10000000 | 0x00020000):
                os._exit(99)
            os.read(r, 1)
            os.execvp("sh", ["sh", "-c",
                'set -e; mount --make-rprivate /; mkdir -p "$0/lower" "$0/stage"; '
                'mount --bind "$1" "$0/lower"; '
                'echo "$2" > /proc/sys/user/max_user_namespaces; cd /tmp; e="$4"; shift 4; '
                'exec setpriv --reuid=65534 --regid=65534 --clear-groups '
                '/usr/bin/python3 -I -S "$e" --root "$0/lower" --stage "$0/stage" -- "$@"',
                stage, root, limit, sys.executable, ENTER] + cmd)
        os.close(r)
        import time
        for _ in range(200):        # wait for the child's unshare
            if os.readlink(f"/proc/{{pid}}/ns/user") != os.readlink("/proc/self/ns/user"):
                break
            time.sleep(0.01)
        for f, m in (("uid_map", "0 0 1\\n65534 65534 1\\n"),
                     ("gid_map", "0 0 1\\n65534 65534 1\\n")):
            with open(f"/proc/{{pid}}/{{f}}", "w") as fh:
                fh.write(m)
        os.write(w, b"x")
        _, st = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(st))
        """))
    stage = os.path.join(tmp, "nobody")
    os.mkdir(stage)
    os.chmod(stage, 0o777)
    return subprocess.run(["/usr/bin/python3", helper, root, stage, str(limit), *cmd],
                          capture_output=True, text=True, timeout=30, cwd="/tmp")


@pytest.mark.userland
def test_non_root_gets_a_user_namespace():
    require(os.geteuid() == 0, "needs root to play a non-root user")
    root = require_userland("trixie-libreswan")
    p = _as_nobody(root, 100, ["sh", "-c", "id -u; /usr/libexec/ipsec/pluto "
                                                    "--version | cut -c1-13; ls /run"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:4] == ["0", "Libreswan 5.2", "lock", "xfrmd"]


@pytest.mark.userland
def test_non_root_without_user_namespaces_gets_one_line():
    require(os.geteuid() == 0, "needs root to play a non-root user")
    root = require_userland("trixie-libreswan")
    p = _as_nobody(root, 0, ["true"])
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1
    assert re.match(
        r"xfrmd run --userland: /\S+/nobody/lower: entering a root filesystem as a "
        "non-root user needs an unprivileged user namespace, which this host refuses "
        r"\(unshare\(CLONE_NEWUSER\): No space left on device\); run as root, or allow them",
        p.stderr), p.stderr


def test_root_without_cap_sys_admin_gets_one_line(tmp_path):
    """Root in an unprivileged container (no CAP_SYS_ADMIN) cannot make a mount namespace."""
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "needs root and setpriv")
    (tmp_path / "stage").mkdir()
    p = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin",
                        sys.executable, "-I", "-S", U.ENTER, "--root", str(tmp_path),
                        "--stage", str(tmp_path / "stage"), "--", "true"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125
    assert p.stderr == (f"xfrmd run --userland: {tmp_path}: entering a root filesystem needs a "
                        "private mount namespace (unshare(CLONE_NEWNS): Operation not "
                        "permitted): CAP_SYS_ADMIN is missing (an unprivileged container?)\n")


@pytest.mark.userland
def test_userland_against_a_running_server(tmp_path):
    """`xfrmd run --socket PATH --userland NAME`: ip 6.15 in the userland talks to a server
    that outlives it; what one run adds, the next one lists."""
    require_userland("trixie-strongswan")
    sock = str(tmp_path / "x.sock")
    srv = subprocess.Popen(XFRMD + ["serve", "--socket", sock, "--quiet"])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        run = XFRMD + ["run", "--socket", sock, "--userland", "trixie-strongswan", "--"]
        p = subprocess.run(run + ["ip", "xfrm", "policy", "add", "src", "10.0.0.0/24", "dst",
                                  "10.0.1.0/24", "dir", "out", "tmpl", "src", "192.0.2.1",
                                  "dst", "198.51.100.1", "proto", "esp", "reqid", "1", "mode",
                                  "tunnel", "offload", "packet", "dev", "eth2"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        p = subprocess.run(run + ["ip", "xfrm", "policy", "list"], capture_output=True,
                           text=True, timeout=30)
        assert "\tcrypto offload parameters: dev eth2 mode packet\n" in p.stdout, p.stdout
    finally:
        srv.terminate()
        srv.wait(10)
