"""The kernel's own net selftests (tools/testing/selftests/net) from Debian's
``linux-source-6.12`` package of the trixie suite, run unmodified under ``xfrmd run``.

Fetching: the mirror the machine's apt sources name (never a host written here), its trixie
``Packages`` index for the package's current file, the ``.deb`` (about 150 MB), and from its
source tarball only the selftest folders, into ``<cache>/xfrmd/kselftest/<version>/``; a
later run finds them there. Running: ``rtnetlink.sh -t TEST`` for each test its ALL_TESTS
names (in a namespace like the host's initial one: lo up), and ``ipsec.c`` built with gcc
(in 8 processes: :func:`run_ipsec`; it makes its own namespaces), each in its own
``xfrmd run``; a test
passes when its output has a PASS line and no FAIL line (rtnetlink.sh) or when it bails out
nowhere and every TAP line of its plan is "ok" (ipsec.c)."""
from __future__ import annotations

import lzma
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass

from ..userland.sources import debian_mirror

PACKAGE = "linux-source-6.12"
SUITE = "trixie"
FOLDERS = ("net/", "kselftest")      # below tools/testing/selftests/
XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xfrmd", "kselftest")


def package_file(mirror: str) -> tuple[str, str]:
    """(version, pool path) of the package in the suite's binary-all index."""
    url = f"{mirror}/dists/{SUITE}/main/binary-all/Packages.xz"
    with urllib.request.urlopen(url, timeout=60) as r:
        text = lzma.decompress(r.read()).decode()
    for stanza in text.split("\n\n"):
        if re.search(rf"^Package: {re.escape(PACKAGE)}$", stanza, re.M):
            version = re.search(r"^Version: (\S+)$", stanza, re.M)
            filename = re.search(r"^Filename: (\S+)$", stanza, re.M)
            if version and filename:
                return version.group(1), filename.group(1)
    raise RuntimeError(f"{PACKAGE} is not in the {SUITE} index of the apt mirror")


def cached() -> str | None:
    """The selftests folder already in the cache (the newest version), or None."""
    root = cache_root()
    found = [os.path.join(root, v, "selftests")
             for v in (sorted(os.listdir(root)) if os.path.isdir(root) else ())]
    found = [f for f in found if os.path.isdir(f)]
    return found[-1] if found else None


def fetch(progress=print) -> str:
    """The selftests folder, fetched into the cache if it is not there yet."""
    done = cached()
    if done is not None:
        return done
    root = cache_root()
    mirror = debian_mirror()
    version, pool = package_file(mirror)
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        deb = os.path.join(tmp, "src.deb")
        progress(f"kselftest: downloading {PACKAGE} {version} (~150 MB)")
        urllib.request.urlretrieve(f"{mirror}/{pool}", deb)
        progress("kselftest: extracting tools/testing/selftests (about 30 s)")
        # the .deb's data archive holds the source tarball; only the selftest folders of
        # that are unpacked (tar strips linux-source-6.12/tools/testing/)
        top = PACKAGE
        patterns = [f"{top}/tools/testing/selftests/{f}*" for f in FOLDERS]
        script = ('deb="$1"; dir="$2"; shift 2; dpkg-deb --fsys-tarfile "$deb" | '
                  'tar -xO --wildcards "*.tar.xz" | '
                  'tar -xJ -C "$dir" --strip-components=3 --wildcards "$@"')
        subprocess.run(["sh", "-c", script, "sh", deb, tmp] + patterns, check=True,
                       capture_output=True)
        final = os.path.join(root, version)
        os.makedirs(final, exist_ok=True)
        os.rename(os.path.join(tmp, "selftests"), os.path.join(final, "selftests"))
    return os.path.join(root, version, "selftests")


@dataclass
class Result:
    name: str
    status: str          # PASS, FAIL, SKIP
    seconds: float
    detail: str


def rtnetlink_tests(selftests: str) -> list[str]:
    text = open(os.path.join(selftests, "net", "rtnetlink.sh")).read()
    m = re.search(r'^ALL_TESTS="(.*?)"', text, re.M | re.S)
    return m.group(1).split() if m else []


# rtnetlink.sh runs in the host's initial namespace, where lo is up with 127.0.0.1/8 and
# ::1 by the time anything runs (its kci_test_route_get asks for routes to both); a
# namespace listing an (empty) device table gets just that (docs/topology.md)
INIT_NETNS = '[[netns]]\nname = "default"\ndevice = []\n'


def _run(args: list[str], cwd: str, timeout: int, topology: str = "bare") -> tuple[str, float]:
    t = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as topo:
        if topology == "init":
            topo.write(INIT_NETNS)
            topo.flush()
            topology = topo.name
        try:
            p = subprocess.run(XFRMD + ["run", "--topology", topology, "--"] + args, cwd=cwd,
                               capture_output=True, text=True, timeout=timeout)
            out = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            out = f"{e.stdout or ''}{e.stderr or ''}\nTIMEOUT after {timeout} s"
    return out, time.monotonic() - t


def run_rtnetlink(selftests: str, test: str, timeout: int = 120) -> Result:
    out, secs = _run(["bash", "./rtnetlink.sh", "-t", test], os.path.join(selftests, "net"),
                     timeout, topology="init")
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    passes = [ln for ln in out.splitlines() if ln.startswith("PASS")]
    skips = [ln for ln in out.splitlines() if ln.startswith("SKIP")]
    if "TIMEOUT" in out:
        return Result(test, "FAIL", secs, out.splitlines()[-1])
    if fails:
        return Result(test, "FAIL", secs, fails[0])
    if passes:
        return Result(test, "PASS", secs, passes[0])
    return Result(test, "SKIP", secs, skips[0] if skips else "no PASS or FAIL line")


def build_ipsec(selftests: str, out_dir: str) -> str:
    exe = os.path.join(out_dir, "ipsec")
    if not os.path.exists(exe):
        subprocess.run(["gcc", "-O1", f"-I{selftests}", "-o", exe,
                        os.path.join(selftests, "net", "ipsec.c")], check=True,
                       capture_output=True)
    return exe


# ``ipsec N`` runs its plan in N processes (its [nr_process] argument). Single-process it
# takes about 17 minutes, as on Linux: each of its 100 tunnel tests pings 2 x 100 times,
# 50 ms apart. With 8 processes it takes about 2 minutes.
IPSEC_PROCESSES = 8
IPSEC_TIMEOUT = 1800
# the first entries of its plan (write_compat_struct_tests: alloc spi, monitor acquire,
# expire state, expire policy, spdinfo attributes); every later one is a "create tunnel"
IPSEC_COMPAT_TESTS = 5
LINE_BUFFERED = ["stdbuf", "-oL"]     # coreutils


def _tap(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith(("ok ", "not ok "))]


def _ipsec_result(lines: list[str], secs: float, plan: int | None = None) -> Result:
    """ipsec.c prints a TAP line per test ("ok N …" / "not ok N …"); it passes when every
    line of its plan ("1..N") is there and "ok"."""
    bail = next((ln for ln in lines if ln.startswith("Bail out!")), None)
    if plan is None:
        plan = next((int(ln[3:]) for ln in lines if re.fullmatch(r"1\.\.\d+", ln)), None)
    tap = _tap(lines)
    ok = sum(ln.startswith("ok ") for ln in tap)
    bad = len(tap) - ok
    if bail or not tap:
        return Result("ipsec.c", "FAIL", secs, (bail or "no TAP lines").split("#")[0].strip())
    if plan is not None and len(tap) != plan:
        return Result("ipsec.c", "FAIL", secs, f"{len(tap)} of its {plan} tests reported")
    return Result("ipsec.c", "PASS" if not bad else "FAIL", secs, f"ok:{ok} not-ok:{bad}")


def _run_first_tests(args: list[str], cwd: str, count: int, timeout: int) -> tuple[list[str], float]:
    """The output of ``xfrmd run -- ARGS`` up to its first ``count`` TAP lines; then the
    run (its own session: server, the program and its children) is stopped."""
    t = time.monotonic()
    p = subprocess.Popen(XFRMD + ["run", "--topology", "bare", "--"] + args,
                         cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    lines: list[str] = []
    timer = threading.Timer(timeout, lambda: _stop(p))
    timer.start()
    try:
        assert p.stdout is not None
        for ln in p.stdout:
            lines.append(ln.rstrip("\n"))
            if len(_tap(lines)) >= count:
                break
    finally:
        timer.cancel()
        _stop(p)
    if len(_tap(lines)) < count and time.monotonic() - t >= timeout:
        lines.append(f"Bail out! TIMEOUT after {timeout} s")
    return lines, time.monotonic() - t


def _stop(p: subprocess.Popen) -> None:
    """SIGTERM to the run's session (``xfrmd run`` forwards it and stops its server), then
    SIGKILL to what is left of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_ipsec(selftests: str, processes: int = IPSEC_PROCESSES,
              timeout: int = IPSEC_TIMEOUT) -> Result:
    """``ipsec`` (``processes`` 1), or ``ipsec N``. With N processes its first tests (the
    compat ones) race with each other in the test itself: its children share one namespace,
    and the "expire state" and "expire policy" tests each bind an XFRMNLGRP_EXPIRE listener
    there and read the first message it gets, which may be the other test's (Linux
    multicasts every expire to every listener of the namespace, ``xfrm_exp_state_notify`` /
    ``xfrm_exp_policy_notify``; on Linux the window is microseconds, here a netlink round
    trip). So those tests' verdicts come from a single-process run stopped after them, and
    the tunnel tests' from ``ipsec N``: every test of the plan runs where it cannot race."""
    exe = build_ipsec(selftests, os.path.dirname(selftests))
    cwd = os.path.join(selftests, "net")
    # its stdout line-buffered: block-buffered into a pipe, a result line can be cut by
    # what a child prints, and a fork copies the unwritten plan line into the child
    if processes == 1:
        out, secs = _run(LINE_BUFFERED + [exe], cwd, timeout)
        return _ipsec_result(out.splitlines(), secs)
    first, s1 = _run_first_tests(LINE_BUFFERED + [exe], cwd, IPSEC_COMPAT_TESTS, min(timeout, 300))
    plan = next((int(ln[3:]) for ln in first if re.fullmatch(r"1\.\.\d+", ln)), None)
    compat = _tap(first)
    if len(compat) < IPSEC_COMPAT_TESTS or any("create tunnel" in ln for ln in compat):
        return _ipsec_result(first, s1, plan)
    out, s2 = _run(LINE_BUFFERED + [exe, str(processes)], cwd, timeout)
    lines = out.splitlines()
    tunnels = [ln for ln in _tap(lines) if "create tunnel" in ln]
    bail = [ln for ln in lines if ln.startswith("Bail out!")]
    return _ipsec_result(compat + tunnels + bail, s1 + s2, plan)


def run_all(selftests: str, only: list[str] | None = None, progress=None,
            ipsec_processes: int = IPSEC_PROCESSES) -> list[Result]:
    tests = [t for t in rtnetlink_tests(selftests) if not only or t in only]
    out = []
    for t in tests:
        if progress:
            progress(f"kselftest: rtnetlink.sh -t {t}")
        out.append(run_rtnetlink(selftests, t))
    if not only or "ipsec.c" in only:
        if progress:
            progress(f"kselftest: ipsec.c ({ipsec_processes} process"
                     f"{'es' if ipsec_processes > 1 else ''})")
        out.append(run_ipsec(selftests, ipsec_processes))
    return out
