"""Attaching to a running server (``xfrmd run --socket``, ``xfrmd env``), explicit flags
beating environment variables, and help that needs no server."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from .conftest import XFRMD, require_shim

NOWHERE = "/nonexistent/xfrmd.sock"
KEY = "0x" + "22" * 20
SA_ADD = ("ip xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x301 reqid 3 "
          f"mode tunnel aead 'rfc4106(gcm(aes))' {KEY} 128")


def _xfrmd(*args, env=None, timeout=60, **kw):
    return subprocess.run(XFRMD + list(args), capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ, XFRMD_SOCKET=NOWHERE),
                          **kw)


def _spis(server) -> list[int]:
    with server.netlink(N.NETLINK_XFRM, "default") as nl:
        return [m.fixed.id.spi for m in nl.request(X.XfrmMsg.GETSA, N.NLM_F_DUMP)
                if m.type == X.XfrmMsg.NEWSA]


def _subcommands() -> list[str]:
    out = _xfrmd("--help").stdout
    return re.search(r"\{([a-z,-]+)\}", out).group(1).split(",")


def test_ctl_help_and_every_help_work_without_a_server():
    p = _xfrmd("ctl", "help")
    assert p.returncode == 0 and p.stdout.startswith("xfrmd ctl verbs:"), p.stderr
    verbs = [ln.split()[0] for ln in p.stdout.splitlines()[1:]]
    assert {"netns", "clock", "link", "lag-model"} <= set(verbs)
    subs = _subcommands()
    assert {"serve", "run", "env", "replay", "ctl", "trace"} <= set(subs)
    for sub in subs:
        h = _xfrmd(sub, "--help")
        assert h.returncode == 0 and h.stdout.startswith("usage: xfrmd " + sub), (sub, h.stderr)
    for verb in ("netns", "link", "clock"):
        h = _xfrmd("ctl", verb, "--help")
        assert h.returncode == 0 and h.stdout.startswith(f"usage: xfrmd ctl {verb} "), h.stderr
    assert _xfrmd("ctl", "bogus", "--help").returncode == 2


def test_run_attaches_to_a_running_server(xfrmd_server):
    require_shim("ip", "sh")
    p = _xfrmd("run", "--socket", xfrmd_server.path, "--", "sh", "-c",
               SA_ADD + " && ip -br link show nsim0 && echo $XFRMD_SOCKET")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("nsim0 ")
    assert p.stdout.splitlines()[-1] == xfrmd_server.path
    assert _spis(xfrmd_server) == [0x301]          # in the running server, not a private one


def test_run_with_no_server_at_the_socket_says_so():
    require_shim("true")
    p = _xfrmd("run", "--socket", NOWHERE, "--", "true")
    assert p.returncode == 1
    assert p.stderr == (f"xfrmd run: no server listens on {NOWHERE} (start one: xfrmd serve "
                        f"--socket {NOWHERE})\n")
    assert _xfrmd("run", "--socket", NOWHERE, "--topology", "bare", "--", "true").returncode == 2


def test_env_prints_exports_a_shell_evals(xfrmd_server):
    require_shim("ip", "sh")
    script = ('eval "$(xfrmd env --socket ' + xfrmd_server.path + ' --netns default)" && '
              + SA_ADD + ' && echo "$XFRMD_SOCKET|$XFRMD_NETNS|$LD_PRELOAD"')
    env = dict(os.environ, XFRMD_SOCKET=NOWHERE, LD_PRELOAD="",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    p = subprocess.run(["sh", "-c", script.replace("xfrmd env", " ".join(XFRMD) + " env")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    sock, netns, preload = p.stdout.strip().split("|")
    assert (sock, netns) == (xfrmd_server.path, "default")
    assert preload == xfrmd_server.preload
    assert p.stderr == ""                           # a server listens there: no warning
    assert _spis(xfrmd_server) == [0x301]


def test_env_warns_when_nothing_listens_yet():
    require_shim()
    p = _xfrmd("env")
    assert p.returncode == 0
    assert f"export XFRMD_SOCKET={NOWHERE}\n" in p.stdout
    assert p.stderr.startswith(f"xfrmd env: no server listens on {NOWHERE} yet")


def test_explicit_flags_beat_the_environment(xfrmd_server, tmp_path):
    """XFRMD_SOCKET names no server; every subcommand given --socket reaches the real one."""
    require_shim("ip", "sh")
    script = tmp_path / "s.ip"
    script.write_text(SA_ADD.replace("'", "") .removeprefix("ip ") + "\n")
    p = _xfrmd("replay", str(script), "--socket", xfrmd_server.path)
    assert p.returncode == 0, p.stderr
    assert _spis(xfrmd_server) == [0x301]
    p = _xfrmd("ctl", "--socket", xfrmd_server.path, "netns", "add", "blue")
    assert p.returncode == 0, p.stderr
    p = _xfrmd("run", "--socket", xfrmd_server.path, "--netns", "blue", "--", "sh", "-c",
               "echo $XFRMD_NETNS; ip -o link show | wc -l",
               env=dict(os.environ, XFRMD_SOCKET=NOWHERE, XFRMD_NETNS="default"))
    assert p.returncode == 0 and p.stdout.split() == ["blue", "1"], p.stderr
    p = _xfrmd("env", "--socket", xfrmd_server.path, "--netns", "blue",
               env=dict(os.environ, XFRMD_SOCKET=NOWHERE, XFRMD_NETNS="default"))
    assert f"export XFRMD_SOCKET={xfrmd_server.path}\nexport XFRMD_NETNS=blue\n" in p.stdout


def test_run_pcap_records_the_private_servers_traffic(tmp_path):
    require_shim("ip")
    pcap = tmp_path / "x.pcap"
    p = _xfrmd("run", "--pcap", str(pcap), "--", "ip", "xfrm", "state", "list")
    assert p.returncode == 0, p.stderr
    data = pcap.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1" and int.from_bytes(data[20:24], "little") == 253
    assert len(data) > 24 + 16 + 16 + 16            # at least a request and its answer


@pytest.mark.parametrize("flag", ["--trace", "--pcap"])
def test_run_recording_needs_a_private_server(flag):
    p = _xfrmd("run", "--socket", NOWHERE, flag, "x", "--", "true")
    assert p.returncode == 2 and "xfrmd serve --trace/--pcap" in p.stderr


def test_a_refusal_inside_an_exception_group_is_still_one_line():
    """trio >= 0.25 wraps what leaves a nursery in an ExceptionGroup: serve unwraps the
    SystemExit carrying its refusal, and lets anything else through."""
    from xfrmd.cli import _system_exit
    refusal = SystemExit("xfrmd: another server is already listening on x")
    assert _system_exit(refusal) is refusal
    assert _system_exit(BaseExceptionGroup("", [BaseExceptionGroup("", [refusal])])) is refusal
    assert _system_exit(BaseExceptionGroup("", [refusal, ValueError()])) is None
    assert _system_exit(ExceptionGroup("", [ValueError()])) is None


def test_python_m_xfrmd_is_the_console_script(xfrmd_server):
    """``python3 -m xfrmd`` (xfrmd/__main__.py) runs the same main as ``xfrmd``: same help,
    same usage error (exit 2), and ``run`` reaches a live server."""
    pm = [sys.executable, "-m", "xfrmd"]
    env = dict(os.environ, XFRMD_SOCKET=NOWHERE)
    h = subprocess.run(pm + ["--help"], capture_output=True, text=True, timeout=60, env=env)
    assert h.returncode == 0 and h.stdout == _xfrmd("--help").stdout, h.stderr
    bad = subprocess.run(pm + ["no-such-command"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert bad.returncode == 2 and "invalid choice: 'no-such-command'" in bad.stderr
    require_shim("ip")
    p = subprocess.run(pm + ["run", "--socket", xfrmd_server.path, "--", "ip", "-br", "link",
                             "show", "nsim0"], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.startswith("nsim0 "), p.stderr
