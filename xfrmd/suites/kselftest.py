"""The kernel's own net selftests (tools/testing/selftests/net) from Debian's
``linux-source-6.12`` package of the trixie suite, and drivers/net/bonding's
``bond_ipsec_offload.sh`` (Linux 6.15 on) from the newest ``linux-source-X.Y`` of forky, run
unmodified under ``xfrmd run``.

Fetching (:class:`Source`): the mirror the machine's apt sources name (never a host written
here), the suite's ``Packages`` index for the package's current file, the ``.deb`` (about
150 MB, streamed: unpacked as it downloads), and from its source tarball only the members
needed, into ``<cache>/xfrmd/kselftest/[bonding/]<version>/``; a later run finds them there.
Running: ``rtnetlink.sh -t TEST`` for each test its ALL_TESTS names (in a namespace like
the host's initial one: lo up), ``ipsec.c`` built with gcc (in 8 processes:
:func:`run_ipsec`; it makes its own namespaces) and ``bond_ipsec_offload.sh``
(:func:`run_bond_ipsec`), each in its own ``xfrmd run``. A test passes when its output has
a PASS line and no FAIL line (rtnetlink.sh), when it bails out nowhere and every TAP line of
its plan is "ok" (ipsec.c), or when it exits 0 with no "[FAIL]" TEST line
(bond_ipsec_offload.sh)."""
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
from typing import Callable

from ..userland.sources import debian_mirror

@dataclass(frozen=True)
class Source:
    """Where a set of selftest files comes from: a Debian suite, the ``linux-source-X.Y``
    package (a regular expression; the newest X.Y of the suite's index wins), the members
    below ``tools/testing/selftests/`` unpacked from its source tarball (prefixes; a folder
    ends with "/"), and the cache folder below :func:`cache_root` (its versions under it)."""
    suite: str
    package: str
    members: tuple[str, ...]
    folder: str = ""


# rtnetlink.sh and ipsec.c: the net selftests of trixie's kernel
NET = Source("trixie", "linux-source-6.12", ("net/", "kselftest"))
# bond_ipsec_offload.sh came with Linux 6.15 (it is not in 6.12's tree), so it comes from
# the newer kernel of forky (testing): its folder and the library it sources
# (net/lib.sh, which sources net/lib/sh/defer.sh)
BONDING = Source("forky", r"linux-source-\d+\.\d+",
                 ("drivers/net/bonding/", "net/lib.sh", "net/lib/sh/"), "bonding")
XFRMD = [sys.executable, "-m", "xfrmd.cli"]


def cache_root(source: Source = NET) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xfrmd", "kselftest", source.folder)


def _release(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def package_file(mirror: str, source: Source = NET) -> tuple[str, str, str]:
    """(package, version, pool path) from the suite's binary-all index: the first stanza of
    the newest package name the pattern matches."""
    url = f"{mirror}/dists/{source.suite}/main/binary-all/Packages.xz"
    with urllib.request.urlopen(url, timeout=60) as r:
        text = lzma.decompress(r.read()).decode()
    found: dict[str, tuple[str, str]] = {}
    for stanza in text.split("\n\n"):
        name = re.search(r"^Package: (\S+)$", stanza, re.M)
        if not name or not re.fullmatch(source.package, name.group(1)):
            continue
        version = re.search(r"^Version: (\S+)$", stanza, re.M)
        filename = re.search(r"^Filename: (\S+)$", stanza, re.M)
        if version and filename:
            found.setdefault(name.group(1), (version.group(1), filename.group(1)))
    if not found:
        raise RuntimeError(f"{source.package} is not in the {source.suite} index of the apt "
                           "mirror")
    package = max(found, key=_release)
    return (package,) + found[package]


def cached(source: Source = NET) -> str | None:
    """The selftests folder already in the cache (the newest version), or None."""
    root = cache_root(source)
    found = [os.path.join(root, v, "selftests")
             for v in (sorted(os.listdir(root)) if os.path.isdir(root) else ())]
    found = [f for f in found if os.path.isdir(f)]
    return found[-1] if found else None


# the .deb's data archive holds the source tarball; only the wanted members of that are
# unpacked (tar strips linux-source-X.Y/tools/testing/). The .deb is read from stdin as it
# downloads: nothing of it is stored
_UNPACK = ('dir="$1"; shift; dpkg-deb --fsys-tarfile /dev/stdin | '
           'tar -xO --wildcards "*.tar.xz" | '
           'tar -xJ -C "$dir" --strip-components=3 --wildcards "$@"')


def _stream(url: str, dest: str, patterns: list[str], label: str,
            progress: Callable[[str], None]) -> None:
    p = subprocess.Popen(["sh", "-c", _UNPACK, "sh", dest] + patterns,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    assert p.stdin is not None and p.stderr is not None
    with urllib.request.urlopen(url, timeout=60) as r:
        total = int(r.headers.get("Content-Length") or 0)
        got, shown = 0, 0
        try:
            while chunk := r.read(1 << 20):
                p.stdin.write(chunk)
                got += len(chunk)
                if total and got * 4 // total > shown:
                    shown = got * 4 // total
                    progress(f"kselftest: {label}: {got >> 20} of {total >> 20} MB")
        except BrokenPipeError:
            pass
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
    err = p.stderr.read().decode(errors="replace")
    if p.wait() != 0:
        raise RuntimeError(f"unpacking {url.rsplit('/', 1)[-1]} failed: {err.strip()}")


def fetch(progress: Callable[[str], None] = print, source: Source = NET) -> str:
    """The selftests folder, fetched into the cache if it is not there yet."""
    done = cached(source)
    if done is not None:
        return done
    root = cache_root(source)
    mirror = debian_mirror()
    package, version, pool = package_file(mirror, source)
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        progress(f"kselftest: streaming {package} {version} from {source.suite} "
                 f"(~150 MB; unpacking {', '.join(source.members)})")
        patterns = [f"{package}/tools/testing/selftests/{m}*" for m in source.members]
        _stream(f"{mirror}/{pool}", tmp, patterns, package, progress)
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
    out, secs, _ = _run_status(args, cwd, timeout, topology)
    return out, secs


def _run_status(args: list[str], cwd: str, timeout: int,
                topology: str = "bare") -> tuple[str, float, int | None]:
    """The output, time and exit status (None: timed out) of ``xfrmd run -- ARGS``."""
    t = time.monotonic()
    status: int | None = None
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as topo:
        if topology == "init":
            topo.write(INIT_NETNS)
            topo.flush()
            topology = topo.name
        try:
            p = subprocess.run(XFRMD + ["run", "--topology", topology, "--"] + args, cwd=cwd,
                               capture_output=True, text=True, timeout=timeout)
            out = p.stdout + p.stderr
            status = p.returncode
        except subprocess.TimeoutExpired as e:
            out = f"{e.stdout or ''}{e.stderr or ''}\nTIMEOUT after {timeout} s"
    return out, time.monotonic() - t, status


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


BOND_IPSEC = "bond_ipsec_offload.sh"
KSFT_SKIP = 4


def run_bond_ipsec(bonding: str, timeout: int = 120) -> Result:
    """drivers/net/bonding/bond_ipsec_offload.sh (from :data:`BONDING`'s tree): it makes its
    own namespace, so ``--topology bare``. Its verdict is its exit status (EXIT_STATUS:
    its last check, "SA not removed from driver", prints no TEST line) and its TEST lines
    (log_test: "[ OK ]" or "[FAIL]" and the reason on the next line)."""
    out, secs, status = _run_status(["bash", f"./{BOND_IPSEC}"],
                                    os.path.join(bonding, "drivers", "net", "bonding"),
                                    timeout)
    lines = out.splitlines()
    tests = [ln for ln in lines if ln.startswith("TEST:")]
    failed = next((i for i, ln in enumerate(lines) if ln.startswith("TEST:") and "[FAIL]" in ln),
                  None)
    if status is None:
        return Result(BOND_IPSEC, "FAIL", secs, lines[-1])
    if failed is not None:
        why = lines[failed + 1].strip() if failed + 1 < len(lines) else lines[failed]
        return Result(BOND_IPSEC, "FAIL", secs, why)
    if status == KSFT_SKIP:
        skip = next((ln for ln in lines if ln.startswith("SKIP")), "exit status 4 (skip)")
        return Result(BOND_IPSEC, "SKIP", secs, skip)
    if status != 0 or not tests:
        tail = lines[-1] if lines else "no output"
        return Result(BOND_IPSEC, "FAIL", secs, f"exit status {status}: {tail}")
    return Result(BOND_IPSEC, "PASS", secs, f"{len(tests)} TEST lines OK")


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
            ipsec_processes: int = IPSEC_PROCESSES, bonding: str | None = None) -> list[Result]:
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
    if bonding is not None and (not only or BOND_IPSEC in only):
        if progress:
            progress(f"kselftest: {BOND_IPSEC}")
        out.append(run_bond_ipsec(bonding))
    return out
