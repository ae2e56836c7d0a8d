"""`xfrmd userland build` as a non-root user: mmdebstrap's unshare mode where the host has
what it needs (newuidmap/newgidmap, the user's subordinate id ranges, unprivileged user
namespaces), else one line naming each missing piece — never mmdebstrap's "unable to pick
chroot mode automatically" — and nothing left in the cache."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile

from xfrmd.userland import nonroot

from .conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = ("xfrmd userland: building trixie-libreswan as a non-root user (uid 65534) needs "
        "mmdebstrap's unshare mode, which needs ")
TOOLS = "newuidmap and newgidmap (Debian: apt-get install uidmap)"
RANGES = ("a range for nobody in /etc/subuid and /etc/subgid (as root: usermod --add-subuids "
          "100000-165535 --add-subgids 100000-165535 nobody)")


def _ranges(path: str, name: str) -> bool:
    try:
        return any(line.startswith(name + ":") for line in open(path))
    except OSError:
        return False


def _build_as(user: str, uid: int, gid: int) -> None:
    """``user`` runs the command line (the system's python3, a world-readable copy of the
    packages) against a mirror that does not exist: with everything the unshare mode needs,
    mmdebstrap runs in it and fails on the mirror; without, one line says what is missing
    (checked against this host's own /etc/subuid, PATH and `unshare --user`)."""
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "needs root and setpriv")
    require(os.path.exists("/usr/bin/python3"), "needs the system's python3")
    require(shutil.which("mmdebstrap") is not None, "needs mmdebstrap")
    tmp = tempfile.mkdtemp(prefix="xfrmd-nonroot-")
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    try:
        os.chmod(tmp, 0o777)
        for pkg in ("xfrmd", "netlink_codec"):
            shutil.copytree(os.path.join(ROOT, pkg), os.path.join(tmp, "src", pkg),
                            ignore=shutil.ignore_patterns("__pycache__"))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
               "XDG_CACHE_HOME": os.path.join(tmp, "cache"), "LC_ALL": "C.UTF-8",
               "PYTHONPATH": os.path.join(tmp, "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        p = subprocess.run(as_user + ["/usr/bin/python3", "-m", "xfrmd.cli", "userland",
                                      "build", "trixie-libreswan", "--mirror",
                                      f"file://{tmp}/no-mirror"],
                           capture_output=True, text=True, env=env, cwd=tmp, timeout=120)
        assert p.returncode == 1, p.stderr
        tools = all(shutil.which(t) for t in ("newuidmap", "newgidmap"))
        ranges = _ranges("/etc/subuid", user) and _ranges("/etc/subgid", user)
        userns = subprocess.run(as_user + ["unshare", "--user", "true"],
                                capture_output=True).returncode == 0
        lines = p.stderr.strip().splitlines()
        if tools and ranges and userns:
            assert "(unshare mode)" in lines[0], p.stderr
            assert lines[-1].startswith("xfrmd userland: building trixie-libreswan failed: "
                                        "suite trixie, mirror file://"), p.stderr
        else:
            assert len(lines) == 1, p.stderr
            line = lines[0]
            assert line.startswith(HEAD.replace("65534", str(uid))), line
            assert line.endswith("; or build as root"), line
            assert (TOOLS in line) == (not tools), line
            assert (RANGES.replace("nobody", user) in line) == (not ranges), line
            assert ("unprivileged user namespaces" in line) == (not userns), line
        left = os.path.join(tmp, "cache", "xfrmd", "userlands")
        assert not os.path.exists(left) or os.listdir(left) == []
    finally:
        shutil.rmtree(tmp)


def test_a_build_as_nobody_uses_the_unshare_mode_or_says_what_is_missing():
    _build_as("nobody", 65534, 65534)


def test_a_user_with_subordinate_ranges_gets_the_unshare_mode():
    """A system user made for the test (removed after it) with ranges in /etc/subuid and
    /etc/subgid: where newuidmap is installed, mmdebstrap builds in unshare mode (here up to
    the missing mirror; a real build as such a user took 52 s on this machine)."""
    require(os.geteuid() == 0 and all(shutil.which(t) for t in ("useradd", "userdel")),
            "needs root, useradd and userdel")
    name = f"xfrmdt{os.getpid() % 100000}"
    files = ("/etc/subuid", "/etc/subgid")
    before = {f: open(f).read() if os.path.exists(f) else None for f in files}
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        start = 300000 + (os.getpid() % 1000) * 65536
        for f in files:
            text = before[f] or ""
            with open(f, "w") as fh:
                fh.write(text + ("\n" if text and not text.endswith("\n") else "")
                         + f"{name}:{start}:65536\n")
        pw = pwd.getpwnam(name)
        _build_as(name, pw.pw_uid, pw.pw_gid)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        for f, text in before.items():         # as they were (userdel may have done it)
            if text is None:
                if os.path.exists(f):
                    os.unlink(f)
            else:
                with open(f, "w") as fh:
                    fh.write(text)


def _tools(tmp_path, names):
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for n in names:
        (d / n).write_text("#!/bin/sh\nexit 0\n")
        (d / n).chmod(0o755)
    return str(d)


def test_each_missing_piece_is_named(tmp_path):
    sub = tmp_path / "subuid"
    sub.write_text("someone:100000:65536\n")
    gid = tmp_path / "subgid"
    gid.write_text("")
    args = {"subuid": str(sub), "subgid": str(gid), "ask_kernel": False}
    assert nonroot.unshare_mode_missing(65534, path=_tools(tmp_path, ["newgidmap"]),
                                        **args) == [
        "newuidmap (Debian: apt-get install uidmap)",
        f"a range for nobody in {sub} and {gid} (as root: usermod --add-subuids "
        "100000-165535 --add-subgids 100000-165535 nobody)"]
    sub.write_text("someone:100000:65536\nnobody:165536:65536\n")
    gid.write_text("65534:165536:65536\n")           # by number: newgidmap accepts it too
    assert nonroot.unshare_mode_missing(
        65534, path=_tools(tmp_path, ["newuidmap", "newgidmap"]), **args) == []
    gid.write_text("nobody:165536:0\n")              # an empty range is none
    assert nonroot.unshare_mode_missing(
        65534, path=_tools(tmp_path, ["newuidmap", "newgidmap"]), **args) == [
        f"a range for nobody in {gid} (as root: usermod --add-subuids 100000-165535 "
        "--add-subgids 100000-165535 nobody)"]


def test_a_host_without_user_namespaces_is_named(tmp_path, monkeypatch):
    """The kernel is asked with `unshare --user` (here a stand-in that fails as util-linux's
    does when user.max_user_namespaces is 0)."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "unshare").write_text("#!/bin/sh\necho 'unshare: unshare failed: No space left on "
                               "device' >&2\nexit 1\n")
    (d / "unshare").chmod(0o755)
    monkeypatch.setenv("PATH", f"{d}:{os.environ['PATH']}")
    assert nonroot._userns_refused() == (
        "unprivileged user namespaces, which this host refuses (`unshare --user`: unshare: "
        "unshare failed: No space left on device)")
    assert nonroot.refusal("trixie-libreswan", 65534, ["X", "Y"]) == HEAD + "X; Y; or build as root"
