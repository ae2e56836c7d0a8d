"""Who may do what (docs/security.md): capabilities as the kernel checks them, the server
socket's ownership, namespaces only the owner makes, and a client that will not talk to
somebody else's server.

The setpriv tests run an unprivileged uid (nobody) against a server owned by root and, for
the capability checks, against a real network namespace of the running kernel with the same
program: both must answer the same errno to every request."""
from __future__ import annotations

import errno as E
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd import transport as T
from xfrmd.capability import (ROOT, Credentials, cap_effective, ioctl_allowed, peer_credentials,
                              service_allowed)
from xfrmd.client import NetlinkSocket, ServerRefused, Service
from xfrmd.kernel import Kernel, KernelError
from xfrmd.testing import make_kernel, running_server

from .conftest import XFRMD, require

NOBODY = 65534
SETPRIV = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
           "--inh-caps=-all"]
PROBE = Path(__file__).with_name("unpriv_probe.py")
SYS_PY = "/usr/bin/python3"        # a python any uid can run (the probe needs only stdlib)
STATUS = "Name:\tx\nUid:\t{u}\t{u}\t{u}\t{u}\nCapEff:\t{c:016x}\n"
UNPRIV = Credentials(pid=1, uid=NOBODY, gid=NOBODY, owner=False, net_admin=False,
                     net_admin_init=False)


# -- the decision, sans-IO ----------------------------------------------------------------

def test_peer_credentials_decide_as_cap_capable():
    full = (1 << 41) - 1
    # the owner's uid: CAP_NET_ADMIN in the namespace it owns, not in the init namespace
    c = peer_credentials(7, 1000, 1000, owner_uid=1000, status=STATUS.format(u=1000, c=0),
                         same_userns=True)
    assert (c.owner, c.net_admin, c.net_admin_init) == (True, True, False)
    # another uid: what its effective set says
    c = peer_credentials(7, 1001, 1001, owner_uid=1000, status=STATUS.format(u=1001, c=0),
                         same_userns=True)
    assert (c.owner, c.net_admin, c.net_admin_init) == (False, False, False)
    c = peer_credentials(7, 1001, 1001, owner_uid=1000, status=STATUS.format(u=1001, c=1 << 12),
                         same_userns=True)
    assert (c.owner, c.net_admin, c.net_admin_init) == (False, True, True)
    # root with its capabilities; root without them only counts as the owner (ctl)
    c = peer_credentials(7, 0, 0, owner_uid=1000, status=STATUS.format(u=0, c=full), same_userns=True)
    assert (c.owner, c.net_admin, c.net_admin_init) == (True, True, True)
    c = peer_credentials(7, 0, 0, owner_uid=1000, status=STATUS.format(u=0, c=0), same_userns=True)
    assert (c.net_admin, c.net_admin_init) == (False, False)
    # capabilities held in a user namespace of its own count for nothing here
    c = peer_credentials(7, 1001, 1001, owner_uid=1000, status=STATUS.format(u=1001, c=full),
                         same_userns=False)
    assert (c.net_admin, c.net_admin_init) == (False, False)
    # a pid that now names another process (its uid differs), or no status at all
    c = peer_credentials(7, 1001, 1001, owner_uid=1000, status=STATUS.format(u=0, c=full),
                         same_userns=True)
    assert c.net_admin is False
    c = peer_credentials(7, 1001, 1001, owner_uid=1000, status=None, same_userns=True)
    assert c.net_admin is False
    assert cap_effective("garbage") == (None, 0)


_TOKEN = st.sampled_from(["0", "1", "²", "٣", "ff", "-1", "0x10", "", " ", "\t"]) | st.text(max_size=3)
_LINE = st.builds(lambda k, a: f"{k}\t{a}", st.sampled_from(["Uid:", "CapEff:", "Gid:", "x"]),
                  st.lists(_TOKEN, max_size=5).map("\t".join))


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE | st.text(max_size=6)).map("\n".join),
       st.integers(0, 2**32), st.integers(0, 2**32))
def test_any_status_text_decides_without_failing(text, uid, owner):
    c = peer_credentials(1, uid, 0, owner_uid=owner, status="x\n" + text, same_userns=True)
    assert c.net_admin == (uid == owner or c.net_admin_init)
    euid, caps = cap_effective("\n" + text)
    assert euid is None or isinstance(euid, int)


def _kernel_and_sockets(protocol):
    k = Kernel(topology=None)
    return k, k.socket(protocol, cred=UNPRIV), k.socket(protocol, cred=ROOT)


def _errno(k, sock, msg_type, flags=N.NLM_F_ACK, payload=b""):
    k.deliver(sock, struct.pack("=IHHII", 16 + len(payload), msg_type, flags | N.NLM_F_REQUEST,
                                1, 0) + payload)
    d = sock.pop()
    while d is not None:
        for h in N.split_messages(d):
            if h.type == N.NLMSG_ERROR:
                return -struct.unpack_from("=i", d, h.offset + 16)[0]
            if h.type == N.NLMSG_DONE:
                return 0
        k.recvd(sock, 65536)
        d = sock.pop()
    raise AssertionError("no answer")


def test_every_xfrm_message_needs_cap_net_admin():
    k, unpriv, root = _kernel_and_sockets(N.NETLINK_XFRM)
    for t in range(X.XfrmMsg.NEWSA, X.XFRM_MSG_MAX + 1):
        assert _errno(k, unpriv, t, payload=bytes(256)) == E.EPERM, t
    assert _errno(k, unpriv, X.XFRM_MSG_MAX + 1) == E.EINVAL      # checked before
    assert _errno(k, unpriv, X.XfrmMsg.GETSA, N.NLM_F_DUMP) == E.EPERM
    assert _errno(k, root, X.XfrmMsg.GETSA, N.NLM_F_DUMP) == 0


def test_rtnetlink_reads_are_anyones_changes_need_cap_net_admin():
    k, unpriv, root = _kernel_and_sockets(N.NETLINK_ROUTE)
    ifi = bytes(16)
    for t in (18, 22, 26, 34):                                     # link, addr, route, rule
        assert _errno(k, unpriv, t, N.NLM_F_DUMP, ifi) == 0
    for t in (16, 17, 19, 20, 21, 24, 25, 32, 33):                 # NEW/DEL/SET …
        assert _errno(k, unpriv, t, payload=ifi) == E.EPERM, t
    assert _errno(k, root, 17, payload=struct.pack("=BxHiII", 0, 0, 99, 0, 0)) == E.ENODEV


def test_group_joins_and_rcvbufforce():
    k, unpriv, root = _kernel_and_sockets(N.NETLINK_XFRM)
    with pytest.raises(KernelError) as e:
        k.bind(unpriv, 0, 1 << 2)
    assert e.value.errno == E.EPERM and not unpriv.bound           # refused before binding
    for opt in (N.NETLINK_ADD_MEMBERSHIP, N.NETLINK_DROP_MEMBERSHIP):
        with pytest.raises(KernelError) as e:
            k.setsockopt(unpriv, N.SOL_NETLINK, opt, 3)
        assert e.value.errno == E.EPERM
    assert unpriv.groups == 0
    k.bind(root, 0, 1 << 2)
    assert root.groups == 4
    r = k.socket(N.NETLINK_ROUTE, cred=UNPRIV)                     # NL_CFG_F_NONROOT_RECV
    k.bind(r, 0, 1)
    k.setsockopt(r, N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 3)
    assert r.groups == 0b101
    before = r.rcvbuf
    with pytest.raises(KernelError) as e:
        k.setsockopt(r, 1, 33, 1 << 29)                            # SO_RCVBUFFORCE, 512 MiB
    assert e.value.errno == E.EPERM and r.rcvbuf == before
    owner = k.socket(N.NETLINK_ROUTE, cred=Credentials(uid=1000, net_admin=True, net_admin_init=False))
    with pytest.raises(KernelError):
        k.setsockopt(owner, 1, 33, 1 << 20)                        # needs the init namespace's


def test_ethtool_set_ops_need_cap_net_admin():
    from xfrmd.topology import load_topology
    k = Kernel(topology=load_topology("default"))
    fam_id = k.families[N.NETLINK_GENERIC].by_name("ethtool").id
    unpriv = k.socket(N.NETLINK_GENERIC, cred=UNPRIV)
    for cmd in (3, 5, 8, 10, 12, 14, 16, 18, 20, 22, 24):          # the *_SET ops
        assert _errno(k, unpriv, fam_id, payload=struct.pack("=BBH", cmd, 1, 0)) == E.EPERM


def test_service_ops_open_to_all_and_the_owners():
    assert service_allowed("if_nametoindex", {}, UNPRIV) is None
    assert service_allowed("read_file", {}, UNPRIV) is None
    for op in ("clock_advance", "netns_add", "netns_del", "link_carrier", "lag_model", "acquire",
               "xfrm_type", "show_offload", "some_future_verb"):
        assert "owner" in service_allowed(op, {}, UNPRIV), op
    assert service_allowed("clock_advance", {}, Credentials(uid=1000, owner=True)) is None
    assert service_allowed("write_file", {}, UNPRIV) == "write_file needs CAP_NET_ADMIN"
    # dev_ioctl / dev_ethtool: reads are anyone's, changes need CAP_NET_ADMIN
    ethtool = lambda cmd: {"request": 0x8946, "data": struct.pack("=I", cmd).hex()}
    assert service_allowed("ioctl", ethtool(3), UNPRIV) is None           # GDRVINFO
    assert service_allowed("ioctl", ethtool(2), UNPRIV) is not None       # SSET
    assert service_allowed("ioctl", {"request": 0x8913, "data": ""}, UNPRIV) is None   # SIOCGIFFLAGS
    assert not ioctl_allowed(0x8914, b"", UNPRIV)                              # SIOCSIFFLAGS
    assert ioctl_allowed(0x8946, struct.pack("=II", 0x4B, 0x0E), UNPRIV)       # PERQUEUE(GCOALESCE)


def test_services_refuse_non_owner_and_do_not_make_namespaces():
    from xfrmd import services
    k = Kernel(topology=None)
    t0 = k.clock.now()
    res = services.handle(k, "default", {"op": "clock_advance", "seconds": 5}, cred=UNPRIV)
    assert res["errno"] == E.EPERM and "owner" in res["error"]
    assert k.clock.now() == t0
    res = services.handle(k, "default", {"op": "netns_add", "name": "x"}, cred=UNPRIV)
    assert res["errno"] == E.EPERM and "x" not in k.namespaces
    res = services.handle(k, "nosuch", {"op": "ping"})
    assert res["errno"] == E.ENOENT and "nosuch" not in k.namespaces
    # knobs of the whole kernel work whatever namespace the connection named
    assert services.handle(k, "nosuch", {"op": "clock_advance", "seconds": 5})["errno"] == 0
    assert k.clock.now() == t0 + 5 and "nosuch" not in k.namespaces


# -- through the server socket ------------------------------------------------------------

@pytest.fixture
def srv():
    with running_server(make_kernel("bare")) as h:
        yield h


def test_socket_is_the_owners_alone(srv):
    st = os.stat(srv.path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()


def test_hello_cannot_make_a_namespace(srv):
    with pytest.raises(OSError) as e:
        NetlinkSocket(N.NETLINK_XFRM, "nosuch", path=srv.path)
    assert e.value.errno == E.ENOENT
    t0 = time.monotonic()
    for i in range(2000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        while True:
            try:
                s.connect(srv.path)
                break
            except BlockingIOError:             # the listen backlog is full for a moment
                time.sleep(0.001)
        s.send(T.hello(N.NETLINK_XFRM, 3, f"ns{i}"))
        s.close()
    for _ in range(1000):                           # the server may still be accepting
        try:
            svc = Service(path=srv.path)
            break
        except BlockingIOError:
            time.sleep(0.01)
    with svc:                                       # after every HELLO above was read
        assert svc.query("netns_list")["namespaces"] == ["default"]
        assert svc.query("netns_add", name="ns1")["errno"] == 0     # the owner may
    assert time.monotonic() - t0 < 30
    with NetlinkSocket(N.NETLINK_XFRM, "ns1", path=srv.path) as nl:
        assert nl.request(X.XfrmMsg.GETSA, N.NLM_F_DUMP) == []      # its own, empty SAD
    with Service("nosuch", path=srv.path) as svc:
        assert svc.query("ping")["errno"] == E.ENOENT


def test_python_clients_get_the_eperms(monkeypatch, srv):
    """Every connection counts as unprivileged (the credentials read at accept replaced):
    xfrmd.client and the pyroute2 adapter report what the kernel refuses."""
    import xfrmd.server
    from xfrmd.client import NetlinkError
    monkeypatch.setattr(xfrmd.server, "_peer_credentials", lambda *a: UNPRIV)
    with NetlinkSocket(N.NETLINK_XFRM, path=srv.path) as nl:
        with pytest.raises(NetlinkError) as e:
            nl.request(X.XfrmMsg.GETSA, N.NLM_F_DUMP)
        assert e.value.errno == E.EPERM
        for level, opt, v in ((N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 3), (1, 33, 1 << 20)):
            with pytest.raises(OSError) as e:
                nl.setsockopt(level, opt, v)
            assert e.value.errno == E.EPERM
        nl.setsockopt(1, 8, 1 << 16)                           # SO_RCVBUF is anyone's
    with pytest.raises(OSError) as e:
        NetlinkSocket(N.NETLINK_XFRM, path=srv.path, groups=1 << 2)
    assert e.value.errno == E.EPERM
    with NetlinkSocket(N.NETLINK_ROUTE, path=srv.path, groups=1) as nl:
        nl.setsockopt(N.SOL_NETLINK, N.NETLINK_ADD_MEMBERSHIP, 5)
        assert [m.type for m in nl.request(18, N.NLM_F_DUMP, bytes(16))] == [16]   # lo
    from xfrmd.pyroute2 import XfrmdSocket
    xs = XfrmdSocket(N.NETLINK_XFRM, path=srv.path)
    xs.bind((0, 0))
    with pytest.raises(OSError) as e:
        xs.bind((0, 1 << 2))
    assert e.value.errno == E.EPERM
    xs.close()
    with Service(path=srv.path) as svc:
        assert svc.query("clock_advance", seconds=1)["errno"] == E.EPERM
        assert svc.query("capable") == {"errno": 0, "net_admin": 0, "net_admin_init": 0,
                                        "nonroot_recv": 1 | 1 << 16}


def test_run_netns_still_works():
    require(shutil.which("ip") and (shutil.which("gcc") or shutil.which("cc")), "needs ip and cc")
    p = subprocess.run(XFRMD + ["run", "--netns", "fresh", "--", "ip", "-br", "link"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "lo"
    p = subprocess.run(XFRMD + ["run", "--", "sh", "-c", "XFRMD_NETNS=nope ip -br link"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.splitlines() == [
        'xfrmd: the server has no network namespace "nope" (create it with `xfrmd ctl netns add nope`)',
        "Cannot bind netlink socket: No such file or directory"]


def _serve(*args):
    return subprocess.run(XFRMD + ["serve", "--quiet", *args], capture_output=True, text=True,
                          timeout=30)


def test_serve_refuses_paths_it_does_not_own(tmp_path):
    link = tmp_path / "dangling.sock"
    link.symlink_to(tmp_path / "nowhere")
    p = _serve("--socket", str(link))
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        f"xfrmd: refusing {link}: it is a symbolic link (owned by uid {os.geteuid()}), "
        "not a socket of this server's user"]
    if os.geteuid() == 0:                     # a file planted by another uid
        f = tmp_path / "planted.sock"
        f.write_text("")
        os.chown(f, NOBODY, NOBODY)
        p = _serve("--socket", str(f))
        assert p.returncode == 1
        assert p.stderr.strip().splitlines() == [
            f"xfrmd: refusing {f}: it is a file owned by uid {NOBODY}, not by this server's user (uid 0)"]
        os.lchown(link, NOBODY, NOBODY)
        p = _serve("--socket", str(link))
        assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)                      # anyone could replace the socket there
    p = _serve("--socket", str(shared / "x.sock"))
    assert p.returncode == 1 and "writable by others" in p.stderr


def test_the_per_user_directory(monkeypatch, tmp_path):
    """serve makes the default path's directory 0700 and refuses one others may use."""
    from xfrmd.server import Server
    priv = tmp_path / "xfrmd-me"
    monkeypatch.setattr(T, "private_dir", lambda: str(priv))
    server = Server(Kernel(topology=None), str(priv / "xfrmd.sock"))
    server._prepare_path()
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o700
    priv.chmod(0o755)
    with pytest.raises(SystemExit) as e:
        server._prepare_path()
    assert str(e.value) == (f"xfrmd: refusing {priv}: not a directory only uid {os.geteuid()} "
                            f"can use (owner uid {os.geteuid()}, mode 0755)")
    priv.rmdir()
    priv.symlink_to(tmp_path)
    with pytest.raises(SystemExit):
        server._prepare_path()


def test_default_path_order(monkeypatch):
    monkeypatch.setenv("XFRMD_SOCKET", "/run/x/a.sock")
    assert T.default_socket_path() == "/run/x/a.sock"
    monkeypatch.delenv("XFRMD_SOCKET")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    assert T.default_socket_path() == "/run/user/7/xfrmd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert T.default_socket_path() == f"/tmp/xfrmd-{os.geteuid()}/xfrmd.sock"


# -- other uids (setpriv, as root) ----------------------------------------------------------

def _need_setpriv():
    ok = os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists(SYS_PY)
    require(bool(ok), "needs root, setpriv and /usr/bin/python3")


@pytest.fixture
def public_dir():
    """A directory nobody can reach (0711: through, not list), with a copy of the shim."""
    from xfrmd import shim
    d = Path(tempfile.mkdtemp(prefix="xfrmd-sec-"))
    d.chmod(0o711)
    so = d / "shim.so"
    shutil.copy(shim.path(), so)
    so.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _start_server(path: Path, *args):
    p = subprocess.Popen(XFRMD + ["serve", "--quiet", "--topology", "bare", "--socket", str(path),
                                  *args], stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if path.exists():
            time.sleep(0.05)
            return p
        if p.poll() is not None:
            raise AssertionError(p.stderr.read())
        time.sleep(0.05)
    p.kill()
    raise AssertionError("server did not start")


def _stop(p):
    p.terminate()
    p.wait(10)


def _as_nobody(argv, env=None, **kw):
    return subprocess.run(SETPRIV + ["env", *(f"{k}={v}" for k, v in (env or {}).items())] + argv,
                          capture_output=True, text=True, timeout=120, **kw)


def test_unprivileged_peer_gets_the_kernels_eperms(public_dir):
    """The probe as nobody: on a fresh real namespace, and through the shim against a
    root-owned server whose socket is 0660 with nobody's group. Same answer everywhere."""
    _need_setpriv()
    require(shutil.which("ip") is not None, "needs ip")
    ns = f"xfrmd-sec-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        real = subprocess.run(["ip", "netns", "exec", ns] + SETPRIV + [SYS_PY, str(PROBE)],
                              capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert real.returncode == 0, real.stderr
    sock = public_dir / "x.sock"
    server = _start_server(sock, "--group", str(NOBODY))
    try:
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY
        emu = _as_nobody([SYS_PY, str(PROBE)], {"LD_PRELOAD": public_dir / "shim.so",
                                                 "XFRMD_SOCKET": sock})
    finally:
        _stop(server)
    assert emu.returncode == 0, emu.stderr
    want = [json.loads(line) for line in real.stdout.splitlines()]
    got = [json.loads(line) for line in emu.stdout.splitlines()]
    assert got == want
    table = dict(want)     # what the comparison covered (the real kernel's answers)
    assert "no answer" not in table.values()
    assert table["rtnl dump GETLINK"] == "ok" and table["rtnl type 16"] == "EPERM"
    assert table["xfrm type 16"] == "EPERM" and table["xfrm type 41"] == "EINVAL"
    assert table["xfrm join group 3"] == "EPERM" and table["rtnl join RTNLGRP_LINK"] == "ok"
    assert table["SO_RCVBUFFORCE"] == table["SO_SNDBUFFORCE"] == "EPERM"
    assert table["ethtool FEATURES_SET"] == "EPERM"


def test_the_owners_uid_has_cap_net_admin_without_capabilities(public_dir, monkeypatch):
    """A server owned by nobody (the owner uid patched; the process is root's): nobody,
    without any capability, is the owner of the emulated user namespace — CAP_NET_ADMIN in
    it, not in the init namespace — as nobody is in a user namespace of its own
    (`unshare -rn`) on the real kernel."""
    _need_setpriv()
    real = subprocess.run(SETPRIV + ["unshare", "-rn", SYS_PY, str(PROBE)], capture_output=True,
                          text=True, timeout=120)
    require(real.returncode == 0, f"needs unprivileged user namespaces: {real.stderr.strip()}")
    import xfrmd.server
    monkeypatch.setattr(xfrmd.server.Server, "owner_uid", NOBODY)
    monkeypatch.setattr(xfrmd.server.Server, "group", NOBODY)
    with running_server(make_kernel("bare"), path=str(public_dir / "x.sock")) as h:
        emu = _as_nobody([SYS_PY, str(PROBE)], {"LD_PRELOAD": public_dir / "shim.so",
                                                 "XFRMD_SOCKET": h.path})
        p = _as_nobody([SYS_PY, "-c", CTL, h.path, '{"op": "netns_add", "name": "mine"}'])
        assert json.loads(p.stdout) == {"errno": 0}                 # the owner's ctl
        assert "mine" in h.kernel.namespaces
    assert emu.returncode == 0, emu.stderr
    r, e = dict(json.loads(x) for x in real.stdout.splitlines()), \
        dict(json.loads(x) for x in emu.stdout.splitlines())
    for key in ("xfrm dump GETSA", "xfrm dump GETPOLICY", "xfrm join group 3", "xfrm bind groups",
                "xfrm drop group 3", "rtnl dump GETLINK", "SO_RCVBUF", "SO_RCVBUFFORCE",
                "SO_SNDBUFFORCE"):
        assert e[key] == r[key], key
    assert r["SO_RCVBUFFORCE"] == "EPERM" and r["xfrm join group 3"] == "ok"
    for key in r:            # no capability check refuses what the kernel lets the owner do
        if key.startswith(("xfrm type", "ethtool")) or key in ("rtnl type 16", "rtnl type 17",
                                                               "rtnl type 19", "rtnl type 20"):
            assert (e[key] == "EPERM") == (r[key] == "EPERM"), (key, r[key], e[key])


CTL = r'''
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(struct.pack("=IHH", 0, 1, 1) + struct.pack("=II", 0xFFFFFFFF, 0) + b"\0")
for q in sys.argv[2:]:
    s.send(struct.pack("=IHH", 0, 1, 16) + q.encode())
    print(s.recv(65536)[8:].decode())
'''


def test_ctl_needs_the_owner_and_0600_keeps_others_out(public_dir):
    _need_setpriv()
    require(shutil.which("ip") is not None, "needs ip")
    sock = public_dir / "x.sock"
    server = _start_server(sock, "--group", str(NOBODY))
    try:
        p = _as_nobody([SYS_PY, "-c", CTL, str(sock), '{"op": "clock_advance", "seconds": 5}',
                        '{"op": "netns_add", "name": "mine"}', '{"op": "if_nametoindex", "name": "lo"}'])
        answers = [json.loads(line) for line in p.stdout.splitlines()]
        assert [a["errno"] for a in answers] == [E.EPERM, E.EPERM, 0], p.stderr
        assert answers[0]["error"] == ("xfrmd: `xfrmd ctl` (clock_advance) needs the server's "
                                       f"owner or root (you are uid {NOBODY})")
        assert answers[2]["index"] == 1
        with Service(path=str(sock)) as svc:                     # the owner (root) may
            assert svc.query("netns_list")["namespaces"] == ["default"]
            assert svc.query("netns_add", name="mine")["errno"] == 0
            assert svc.query("genetlink", state="off")["errno"] == 0
        if shutil.which("ethtool"):
            # ethtool's ioctl path (no genetlink): dev_ethtool lets anyone read, not change
            p = _as_nobody(["sh", "-c", "ethtool -k lo >/dev/null; echo rc=$?; ethtool -K lo rx off"],
                           {"LD_PRELOAD": public_dir / "shim.so", "XFRMD_SOCKET": sock})
            assert p.stdout == "rc=0\n" and p.returncode == 1
            assert "Cannot set device feature settings: Operation not permitted" in p.stderr
    finally:
        _stop(server)
    server = _start_server(sock)                                  # 0600: nobody cannot connect
    try:
        p = _as_nobody(["ip", "link"], {"LD_PRELOAD": public_dir / "shim.so", "XFRMD_SOCKET": sock})
        assert p.returncode != 0 and "Permission denied" in p.stderr
        assert p.stdout == ""
    finally:
        _stop(server)


PLANT = r'''
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.recv(65536)
'''


def test_a_squatted_default_path_is_refused(public_dir):
    """Another uid listens at our default path ($XDG_RUNTIME_DIR/xfrmd.sock): the shim and
    the Python client refuse it with one line, `ip` fails, nothing is sent; `serve` refuses
    to take the path over."""
    _need_setpriv()
    require(shutil.which("ip") is not None, "needs ip")
    rundir = public_dir / "run"
    rundir.mkdir()
    rundir.chmod(0o1777)                     # as /tmp: anyone may create, only owners remove
    path = rundir / "xfrmd.sock"
    squatter = subprocess.Popen(SETPRIV + [SYS_PY, "-c", PLANT, str(path)], stdout=subprocess.PIPE,
                                text=True)
    try:
        assert squatter.stdout.readline() == "listening\n"
        env = {k: v for k, v in os.environ.items() if k != "XFRMD_SOCKET"}
        env.update(XDG_RUNTIME_DIR=str(rundir), LD_PRELOAD=str(public_dir / "shim.so"))
        p = subprocess.run(["ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
                            "proto", "esp", "spi", "1", "enc", "aes", "0x" + "11" * 16],
                           env=env, capture_output=True, text=True, timeout=30)
        assert p.returncode != 0
        lines = p.stderr.splitlines()
        assert lines[0] == f"xfrmd: refusing server {path} owned by uid {NOBODY}"
        assert not any("xfrmd" in line for line in lines[1:])      # said once
        env.pop("LD_PRELOAD")
        with pytest.raises(ServerRefused) as e:
            NetlinkSocket(N.NETLINK_XFRM, path=str(path))
        assert e.value.strerror == f"xfrmd: refusing server at {path} owned by uid {NOBODY}"
        from xfrmd.pyroute2 import XfrmdSocket
        with pytest.raises(ServerRefused):
            XfrmdSocket(N.NETLINK_ROUTE, path=str(path))
        p = subprocess.run(XFRMD + ["ctl", "ping"], env=env, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1
        assert p.stderr.splitlines() == [f"xfrmd: refusing server at {path} owned by uid {NOBODY}"]
        p = subprocess.run(XFRMD + ["serve", "--quiet"], env=env, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1
        assert p.stderr.splitlines() == [
            f"xfrmd: refusing {path}: it is a socket owned by uid {NOBODY}, not by this server's "
            "user (uid 0)"]
    finally:
        squatter.kill()
        squatter.wait()


IP_CASES = r'''
ip xfrm state; echo "rc=$?"
ip xfrm policy; echo "rc=$?"
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 1 enc 'cbc(aes)' 0x00112233445566778899aabbccddeeff; echo "rc=$?"
timeout 5 ip xfrm monitor; echo "rc=$?"
ip link add d0 type dummy; echo "rc=$?"
ip link set lo up; echo "rc=$?"
ip addr add 192.0.2.1/24 dev lo; echo "rc=$?"
ip route add 198.51.100.0/24 dev lo; echo "rc=$?"
ip -br link; echo "rc=$?"
ip rule; echo "rc=$?"
ethtool -K lo rx off; echo "rc=$?"
'''


def test_ip_and_ethtool_as_nobody_say_what_the_kernel_says(public_dir):
    """What a user sees: the same commands as nobody on a real namespace and through the
    shim against a root-owned server (0660, nobody's group) — same text, same exit codes."""
    _need_setpriv()
    require(shutil.which("ip") is not None and shutil.which("ethtool") is not None,
            "needs ip and ethtool")
    script = public_dir / "cases.sh"
    script.write_text(IP_CASES)
    script.chmod(0o755)
    ns = f"xfrmd-sec-ip-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        real = subprocess.run(["ip", "netns", "exec", ns] + SETPRIV + ["sh", str(script)],
                              capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    sock = public_dir / "x.sock"
    server = _start_server(sock, "--group", str(NOBODY))
    try:
        emu = _as_nobody(["sh", str(script)], {"LD_PRELOAD": public_dir / "shim.so",
                                               "XFRMD_SOCKET": sock})
    finally:
        _stop(server)
    assert (emu.stdout, emu.stderr) == (real.stdout, real.stderr)
    assert real.stdout.count("rc=2") == 5                      # what the comparison covered
    assert "Cannot bind netlink socket: Operation not permitted" in real.stderr


# -- the credentials read at accept (capget, or /proc/PID/status) ---------------------------

_PEER = ("import socket, sys\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
         "s.connect(sys.argv[1])\n"
         "s.recv(1)\n")                   # until the test has read what it wanted


def _accepted_credentials(prefix: list[str], *, gone: bool = False):
    """What the server reads of a peer started as ``prefix`` + python, once through capget
    and once through /proc/PID/status (capget made unavailable): both (owner uid 0 and
    1000). ``gone``: the peer exits (and is reaped) before the reads."""
    import xfrmd.server as S
    d = tempfile.mkdtemp(prefix="xfrmd-cred-")     # pytest's tmp_path is 0700 under 0700
    os.chmod(d, 0o711)                             # nobody reaches the socket through it
    path = os.path.join(d, "peer.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lst.bind(path)
    os.chmod(path, 0o777)
    lst.listen(1)
    peer = subprocess.Popen(prefix + [SYS_PY, "-c", _PEER, path])
    try:
        s, _ = lst.accept()
        pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, S.SO_PEERCRED, 12))
        assert pid == peer.pid                  # setpriv and unshare exec: the same process
        if gone:
            s.send(b"x")
            peer.wait(10)
            assert S._capget(pid) is None           # nothing left to read: ESRCH
        else:
            # capget reads the set CapEff prints (a wrong decoding of its two words would
            # still agree on the verdicts below whenever CAP_NET_ADMIN's bit survives)
            with open(f"/proc/{pid}/status") as f:
                assert S._capget(pid) == cap_effective(f.read())[1]
        out = []
        for capget in (True, False):
            saved = S._CAPGET
            if not capget:
                S._CAPGET = False
            try:
                out.append([S._peer_credentials(s, pid, uid, gid, owner)
                            for owner in (0, 1000)])
            finally:
                S._CAPGET = saved
        s.close()
        return out
    finally:
        lst.close()
        peer.kill()
        peer.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def _triples(creds):
    return [(c.owner, c.net_admin, c.net_admin_init) for c in creds]


@pytest.mark.parametrize("who, prefix, want", [
    # root with its capabilities: everything, whoever owns the server
    ("root", [], [(True, True, True), (True, True, True)]),
    # root without CAP_NET_ADMIN: the owner of a root server (ctl, the namespace), but not
    # CAP_NET_ADMIN of the init namespace; nothing of a server another uid owns
    ("root -net_admin", ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"],
     [(True, True, False), (True, False, False)]),
    # nobody: no capabilities
    ("nobody", SETPRIV, [(False, False, False), (False, False, False)]),
    # root of a user namespace of its own (mapped to uid 0 here: SO_PEERCRED says 0): its
    # capabilities count for nothing here, only the uid does
    ("unshare -r", ["unshare", "-r"], [(True, True, False), (True, False, False)]),
])
def test_accept_reads_the_peers_capabilities_as_proc_status_says(who, prefix, want):
    """capget(2), the accept path's read, decides as /proc/PID/status does (the path of
    kernels without SO_PEERPIDFD), for each kind of peer."""
    if prefix:
        _need_setpriv()
        require(shutil.which(prefix[0]) is not None, f"needs {prefix[0]}")
    if prefix[:1] == ["unshare"] and subprocess.run(["unshare", "-r", "true"]).returncode:
        pytest.skip("user namespaces are not available")
    fast, status = _accepted_credentials(prefix)
    assert _triples(fast) == _triples(status) == want, who


def test_a_peer_gone_before_accept_lends_no_capabilities():
    """A peer that exited before its credentials were read (its pid free for another
    process): what its uid gives, no capabilities, on both paths."""
    require(os.geteuid() == 0, "needs root (a peer with CAP_NET_ADMIN)")
    fast, status = _accepted_credentials([], gone=True)
    assert _triples(fast) == _triples(status) == [(True, True, False), (True, False, False)]
