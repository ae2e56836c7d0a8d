"""`xfrmd userland build | list`: the mirror comes from apt's sources, the cache is keyed by
the package list, a failed or interrupted build leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from xfrmd import userland as U
from xfrmd.userland import sources
from xfrmd.userland.build import failure_line

from .conftest import XFRMD, require


def _xfrmd(*args, cache, timeout=120, **kw):
    from xfrmd import shim     # the shim stays in its usual cache (no rebuild per test)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache),
               XFRMD_SHIM_DIR=os.path.dirname(shim.path(build=False)))
    env.pop("XFRMD_DEBIAN_MIRROR", None)
    return subprocess.run(XFRMD + list(args), capture_output=True, text=True, env=env,
                          timeout=timeout, **kw)


# ---- the mirror, from apt's own configuration ----

def _apt(tmp_path, files: dict) -> str:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return str(d)


def test_mirror_from_a_one_line_sources_list(tmp_path):
    d = _apt(tmp_path, {"sources.list": (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://third.example/apt cloud-sdk main\n"
        "deb [ trusted=yes ] http://mirror.example/debian/ bookworm main contrib\n")})
    assert sources.debian_mirror(d) == "http://mirror.example/debian"


def test_mirror_from_deb822_skips_disabled_entries_files_and_the_security_archive(tmp_path):
    d = _apt(tmp_path, {
        "sources.list.d/a-security.sources": (
            "Types: deb\nURIs: http://security.example/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n"),
        "sources.list.d/b-off.sources": (
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n"),
        "sources.list.d/c-old.list.disabled": "deb http://disabled.example/debian sid main\n",
        "sources.list.d/d-debian.sources": (
            "# a comment\nTypes: deb-src deb\n"
            "URIs: http://deb822.example/debian\n http://second.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")})
    assert sources.debian_mirror(d) == "http://deb822.example/debian"


def test_no_debian_mirror_is_a_clear_error(tmp_path):
    d = _apt(tmp_path, {"sources.list": "deb http://third.example/apt nodistro main\n"})
    with pytest.raises(sources.NoMirror, match="no Debian mirror in the apt sources.*--mirror"):
        sources.debian_mirror(d)


def test_this_machines_sources_name_a_mirror():
    require(os.path.isdir("/etc/apt"), "needs a Debian host (apt sources)")
    assert "://" in sources.debian_mirror()


# ---- bad input ----

def test_unknown_name_lists_the_known_ones(tmp_path):
    for args in (["userland", "build", "nope"], ["run", "--userland", "nope", "--", "true"]):
        p = _xfrmd(*args, cache=tmp_path)
        assert p.returncode == 1
        assert p.stderr.strip() == ("xfrmd userland: unknown userland 'nope'; known: "
                                    "trixie-strongswan, trixie-libreswan")
    assert not os.path.exists(tmp_path / "xfrmd" / "userlands")


def _require_mmdebstrap():
    require(shutil.which("mmdebstrap") is not None, "needs mmdebstrap (apt-get install "
                                                    "mmdebstrap)")
    require(os.geteuid() == 0, "builds here run as root (mmdebstrap's root mode)")


def test_unreachable_mirror_one_line_and_nothing_left(tmp_path):
    _require_mmdebstrap()
    cache = tmp_path / "cache"
    stale = cache / "xfrmd" / "userlands" / ".trixie-libreswan.build-999999999"
    (stale / "etc").mkdir(parents=True)      # left by a build killed with SIGKILL
    p = _xfrmd("userland", "build", "trixie-libreswan", "--mirror",
               f"file://{tmp_path}/no-mirror", cache=cache)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"xfrmd userland: building trixie-libreswan failed: suite trixie, "
                           f"mirror file://{tmp_path}/no-mirror unreachable: ")
    assert "does not have a Release file" in last or "Failed to fetch" in last
    assert os.listdir(cache / "xfrmd" / "userlands") == []    # the stale one swept too


def test_failure_line_names_the_package():
    ul = U.Userland("x", "trixie", ("iproute2", "no-such-pkg"))
    lines = ["I: installing remaining packages inside the chroot...",
             "Reading package lists...", "E: Unable to locate package no-such-pkg",
             "E: setup failed: E: apt-get … install iproute2 no-such-pkg failed",
             "E: mmdebstrap failed to run"]
    assert failure_line(ul, "http://m/debian", lines, 1) == (
        "xfrmd userland: building x failed: suite trixie, package no-such-pkg: Unable to "
        "locate package no-such-pkg")
    lines = ["E: Failed to fetch http://m/debian/pool/main/i/iproute2/iproute2_6.15.0-1_amd64"
             ".deb  404  Not Found [IP: 192.0.2.9 80]"]
    assert failure_line(ul, "http://m/debian", lines, 1).startswith(
        "xfrmd userland: building x failed: suite trixie, package iproute2: Failed to fetch")


@pytest.mark.userland
def test_missing_package_one_line_and_nothing_left(tmp_path, monkeypatch):
    """The real mirror, a package it does not have: one line, the cache stays empty. A real
    build learns it late (after the essential set is installed, 15-30 s; that output is
    test_failure_line_names_the_package's); here mmdebstrap's `custom` variant resolves the
    list first, so the same failure comes after apt's update (~3 s)."""
    _require_mmdebstrap()
    from xfrmd.userland import build as B
    real_argv = B.mmdebstrap_argv
    monkeypatch.setattr(B, "mmdebstrap_argv", lambda *a: [
        "--variant=custom" if w == "--variant=essential" else w for w in real_argv(*a)])
    monkeypatch.setitem(U.KNOWN, "trixie-strongswan",
                        U.Userland("trixie-strongswan", "trixie", ("iproute2", "xfrmd-no-such")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from xfrmd.userland.build import build
    import io
    with pytest.raises(U.UserlandError) as e:
        build(U.KNOWN["trixie-strongswan"], out=io.StringIO())
    assert str(e.value) == ("xfrmd userland: building trixie-strongswan failed: suite trixie, "
                            "package xfrmd-no-such: Unable to locate package xfrmd-no-such")
    assert os.listdir(tmp_path / "xfrmd" / "userlands") == []


@pytest.mark.userland
def test_interrupted_build_leaves_nothing(tmp_path):
    _require_mmdebstrap()
    for sig in (signal.SIGINT, signal.SIGTERM):
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
        # SIGINT as a terminal's foreground job has it: a harness started in the background
        # by a non-interactive shell inherits it ignored, and then only mmdebstrap (which
        # sets its own handler) would see the Ctrl-C
        p = subprocess.Popen(XFRMD + ["userland", "build", "trixie-libreswan"], env=env,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        seen = []
        for line in p.stderr:
            seen.append(line)
            if "downloading packages" in line or "extracting archives" in line:
                break
        assert seen and ("extracting" in seen[-1] or "downloading" in seen[-1]), seen
        time.sleep(1.0)
        os.killpg(p.pid, sig)          # as Ctrl-C / kill would: mmdebstrap gets it too
        rest = p.stderr.read()
        assert p.wait(60) == 1
        assert rest.strip().splitlines()[-1].startswith(
            "xfrmd userland: building trixie-libreswan interrupted"), rest
        assert os.listdir(tmp_path / "xfrmd" / "userlands") == []
        assert str(tmp_path) not in open("/proc/self/mountinfo").read()


# ---- the cache ----

def _fake_root(path, key: str | None, versions: dict):
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "sh").write_text("")
    (path / "var/lib/dpkg").mkdir(parents=True)
    status = "".join(f"Package: {p}\nStatus: install ok installed\nVersion: {v}\n\n"
                     for p, v in versions.items())
    (path / "var/lib/dpkg/status").write_text(status)
    if key is not None:
        (path / U.STAMP).write_text(json.dumps({"key": key, "bytes": 123e6,
                                                "built": "2026-01-01 00:00 UTC"}))


def test_cache_is_keyed_by_the_package_list(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ul = U.KNOWN["trixie-libreswan"]
    _fake_root(tmp_path / "xfrmd/userlands/trixie-libreswan", ul.key,
               {"libreswan": "5.2-2", "iproute2": "6.15.0-1"})
    assert U.is_current(ul) and U.resolve("trixie-libreswan") == ul.path
    other = U.Userland(ul.name, ul.suite, ul.packages + ("tcpdump",))
    assert other.key != ul.key and not U.is_current(other)
    assert U.Userland(ul.name, ul.suite, tuple(reversed(ul.packages))).key == ul.key
    monkeypatch.setitem(U.KNOWN, ul.name, other)
    with pytest.raises(U.UserlandError, match="built from another package list: run "
                                              "`xfrmd userland build trixie-libreswan`"):
        U.resolve("trixie-libreswan")


def test_warm_build_is_a_no_op_and_list_shows_versions(tmp_path):
    ul = U.KNOWN["trixie-strongswan"]
    _fake_root(tmp_path / "xfrmd/userlands/trixie-strongswan", ul.key,
               {"strongswan-charon": "6.0.1-6+deb13u7", "iproute2": "6.15.0-1",
                "ethtool": "1:6.14.2-1"})
    _fake_root(tmp_path / "xfrmd/userlands/trixie-libreswan", "old",
               {"libreswan": "5.2-2", "iproute2": "6.15.0-1"})
    t = time.monotonic()
    p = _xfrmd("userland", "build", "trixie-strongswan", cache=tmp_path)
    assert time.monotonic() - t < 15        # a real build takes 30 s and more
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("trixie-strongswan: up to date: ip 6.15.0  charon 6.0.1  "
                               "ethtool 6.14.2  ")
    p = _xfrmd("userland", "list", cache=tmp_path)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("trixie-strongswan    ip 6.15.0  charon 6.0.1  ethtool 6.14.2  "
                               "(123 MB, built 2026-01-01 00:00 UTC)")
    assert lines[1].startswith("trixie-libreswan     ip 6.15.0  pluto 5.2  (123 MB, built "
                               "2026-01-01 00:00 UTC, stale: its package list changed")
    assert len(lines) == 2


def test_run_with_an_unbuilt_or_non_root_directory(tmp_path):
    p = _xfrmd("run", "--userland", "trixie-libreswan", "--", "true", cache=tmp_path)
    assert p.returncode == 1
    assert p.stderr.strip() == ("xfrmd: userland trixie-libreswan is not built: run "
                                "`xfrmd userland build trixie-libreswan`")
    p = _xfrmd("run", "--userland", str(tmp_path), "--", "true", cache=tmp_path)
    assert p.returncode == 1
    assert p.stderr.strip() == f"xfrmd: {tmp_path} is not a root filesystem (no /bin/sh in it)"
