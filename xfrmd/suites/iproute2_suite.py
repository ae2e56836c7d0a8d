"""iproute2's own testsuite (``testsuite/tests/ip/*/*.t``) for the ``ip`` on PATH, run
unmodified under ``xfrmd run``.

Where it comes from: the upstream tarball of Debian's iproute2 source package of the same
upstream version as the installed ``ip`` (``ip -V``), found through the Sources index of a
suite the machine's apt sources name (then trixie, forky, sid), on their mirror. Only
``testsuite/``, ``lib/`` and ``include/`` are unpacked: the latter two build the testsuite's
``generate_nlmsg`` helper (the blob ``ip monitor file`` reads in show_dev_wo_vf_rate.t) with
gcc, as its Makefile would link it from the built tree.

Running: as testsuite/Makefile runs a test (``IP=… STD_ERR=… STD_OUT=… ERRF=… tests/X.t``,
under ``unshare -n`` there), each in its own ``xfrmd run --topology bare`` instead; exit
status 127 is SKIPPED, a written ERRF file FAILED, else PASS."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from ..userland.sources import DEBIAN_SUITES, apt_entries
from . import debsrc
from .kselftest import Result

PACKAGE = "iproute2"
XFRMD = [sys.executable, "-m", "xfrmd.cli"]
FALLBACK_SUITES = ["trixie", "forky", "sid"]
TIMEOUT = 120
# lib/*.c files generate_nlmsg does not need that want libraries the machine may lack
_LIB_SKIP = ("bpf_", "mnl_utils", "coverity", "cg_map")
# (test, the feature xfrmd does not model that it needs): docs/suites.md has the table
UNMODELLED = {
    "ip/link/add_type_bareudp.t": "the bareudp link kind",
    "ip/tunnel/add_tunnel.t": "ip tunnels (gre0 / ip6gre0 and SIOCADDTUNNEL)",
}


def root() -> str:
    return debsrc.cache_root("iproute2")


def installed_version(ip: str = "ip") -> str:
    """``ip -V``: "ip utility, iproute2-6.1.0, libbpf 1.1.2" → "6.1.0"."""
    out = subprocess.run([ip, "-V"], capture_output=True, text=True).stdout
    m = re.search(r"iproute2-v?(\d[\w.]*)", out)
    if not m:
        raise RuntimeError(f"cannot tell the iproute2 version from `ip -V`: {out.strip()!r}")
    return m.group(1).rstrip(".")


def cached(version: str | None = None) -> str | None:
    """The unpacked testsuite folder of ``version`` (else the newest) in the cache."""
    r = root()
    names = [version] if version else (sorted(os.listdir(r)) if os.path.isdir(r) else [])
    found = [t for v in names for t in glob.glob(os.path.join(r, v, "iproute2-*", "testsuite"))]
    return found[-1] if found else None


def _suites() -> list[str]:
    named = [s for _, suites in apt_entries() for s in suites if s in DEBIAN_SUITES]
    return list(dict.fromkeys(named + FALLBACK_SUITES))


def build_generate_nlmsg(testsuite: str) -> str | None:
    """tools/generate_nlmsg built from its source and the tree's lib/ with gcc; None when
    it does not build."""
    tools = os.path.join(testsuite, "tools")
    lib = os.path.join(os.path.dirname(testsuite), "lib")
    srcs = sorted(f for f in glob.glob(os.path.join(lib, "*.c"))
                  if not os.path.basename(f).startswith(_LIB_SKIP))
    inc = os.path.join(os.path.dirname(testsuite), "include")
    exe = os.path.join(tools, "generate_nlmsg")
    p = subprocess.run(["gcc", "-w", "-D_GNU_SOURCE", "-DHAVE_SETNS", "-DHAVE_HANDLE_AT",
                        "-DNEED_STRLCPY", f"-I{inc}", f"-I{inc}/uapi", "-include",
                        f"{inc}/uapi/linux/netlink.h", "-o", exe,
                        os.path.join(tools, "generate_nlmsg.c")] + srcs + ["-lm"],
                       capture_output=True, text=True)
    return exe if p.returncode == 0 else None


def fetch(progress=print) -> str:
    """The testsuite folder of the installed ip's version, fetched if not cached."""
    version = installed_version()
    done = cached(version)
    if done is not None:
        return done
    mirror, tarball = debsrc.find(PACKAGE, _suites(), upstream=version)
    progress(f"iproute2: downloading Debian's {PACKAGE} {tarball.version} source")
    vdir = os.path.join(root(), version)
    if os.path.isdir(vdir):
        shutil.rmtree(vdir)
    tree = debsrc.unpack(mirror, tarball, vdir, ["testsuite", "lib", "include"])
    testsuite = os.path.join(tree, "testsuite")
    if build_generate_nlmsg(testsuite) is None:
        progress("iproute2: tools/generate_nlmsg does not build: show_dev_wo_vf_rate.t fails")
    return testsuite


def ip_tests(testsuite: str) -> list[str]:
    """``ip/link/new_link.t`` …: every test below tests/ip, sorted as ``make listtests``
    lists them (by folder)."""
    base = os.path.join(testsuite, "tests")
    return sorted(os.path.relpath(p, base)
                  for p in glob.glob(os.path.join(base, "ip", "*", "*.t")))


def run_test(testsuite: str, test: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        errf = os.path.join(tmp, "err")
        tools = {k: shutil.which(v) or v for k, v in
                 (("IP", "ip"), ("TC", "tc"), ("SS", "ss"), ("BRIDGE", "bridge"))}
        env = ["env"] + [f"{k}={v}" for k, v in tools.items()] + [
            "DEV=lo", f"IPVER={test}", f"STD_ERR={tmp}/stderr", f"STD_OUT={tmp}/stdout",
            f"ERRF={errf}"]
        t = time.monotonic()
        try:
            p = subprocess.run(XFRMD + ["run", "--topology", "bare", "--"] + env
                               + ["sh", os.path.join("tests", test)], cwd=testsuite,
                               capture_output=True, text=True, timeout=TIMEOUT)
            rc, out = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired:
            return Result(test, "FAIL", time.monotonic() - t, f"TIMEOUT after {TIMEOUT} s")
        secs = time.monotonic() - t
        if rc == 127:
            return Result(test, "SKIP", secs, "")
        if os.path.exists(errf):
            lines = [ln.strip() for ln in open(errf).read().splitlines() if ln.strip()]
            said = next((lines[i + 1] for i, ln in enumerate(lines[:-1])
                         if ln == "stderr output:"), "")
            return Result(test, "FAIL", secs, f"{lines[0]} {said}".strip()[:200])
        if rc != 0:
            return Result(test, "FAIL", secs, (out.strip().splitlines() or [""])[-1][:200])
        return Result(test, "PASS", secs, "")


def run_all(testsuite: str, only: list[str] | None = None, progress=None) -> list[Result]:
    gen = os.path.join(testsuite, "tools", "generate_nlmsg")
    if os.path.exists(gen):
        # the Makefile runs it before every test: it writes tests/ip/link/dev_wo_vf_rate.nl
        subprocess.run([gen], cwd=testsuite, capture_output=True)
    out = []
    for test in ip_tests(testsuite):
        if only and test not in only:
            continue
        if progress:
            progress(f"iproute2: {test}")
        out.append(run_test(testsuite, test))
    return out


def summary(results: list[Result]) -> list[str]:
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    need = sum(r.status == "FAIL" and r.name in UNMODELLED for r in results)
    modelled = len(results) - counts["SKIP"] - need
    return [f"iproute2: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} "
            f"skipped of {len(results)}; {need} of the failures need features xfrmd does not "
            f"model; {counts['PASS']} of the other {modelled} pass"]
