"""pyroute2's own Linux tests (``tests/test_linux``) for links, addresses, routes, rules and
namespaces, run unmodified under ``xfrmd run``.

Where they come from: pyroute2's published source distribution carries only its unit tests,
so they come from Debian's source package (its upstream tarball) of the ``forky`` suite,
found through the Sources index of the mirror the machine's apt sources name. Debian's
version (0.8.1) is not the one the environment has installed (0.9.x), and the tests of one
release test that release's API (0.9 rewrote the core around asyncio). So the tests run
against the tarball's own ``pyroute2`` package, put first on ``PYTHONPATH``: the
environment's pyroute2 and its users (tests/test_pyroute2*.py) are untouched. The one test
dependency the environment lacks (netaddr) is installed from PyPI into a folder next to it.

Each test file runs in its own ``xfrmd run`` (the default topology: a host with lo up and a
default route, where pyroute2's tests expect to run; pytest with a 60 s limit per test); a
test passes, fails (a failure or an error in its fixtures) or is skipped as pytest says.
:data:`UNMODELLED` names the features xfrmd does not model: a failing test matching one is
counted apart (docs/suites.md has the table)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from . import debsrc
from .kselftest import Result

PACKAGE = "pyroute2"
SUITES = ["forky"]
XFRMD = [sys.executable, "-m", "xfrmd.cli"]
DEPENDENCIES = ["netaddr"]          # what tests/utils.py imports beyond pytest and pyroute2
FILES = (                           # below tests/test_linux/
    "test_ipr/test_link.py", "test_ipr/test_link_create.py", "test_ipr/test_addr.py",
    "test_ipr/test_route.py", "test_ipr/test_rule.py", "test_ipr/test_netns.py",
    "test_ndb/test_interface_create.py", "test_ndb/test_interface_set.py",
    "test_ndb/test_address.py", "test_ndb/test_routes.py", "test_ndb/test_rules.py",
    "test_ndb/test_netns.py", "test_netns/test_nspopen.py",
)
TEST_TIMEOUT = 60
# pyroute2's Linux tests run in a host's own namespace: lo up, addresses, a default route
# (tests skip or fail without them). xfrmd's default topology is that host; `bare` is the
# fresh namespace the kernel's selftests build their own setups in.
TOPOLOGY = "default"
FILE_TIMEOUT = 1200
# (pattern on the test's name, the feature xfrmd does not model that it needs): xfrmd refuses
# these with EOPNOTSUPP and an extack saying "xfrmd: … not modelled" (pyroute2 prints only the
# errno), or the kernel's "Unknown device type" for a link kind
UNMODELLED: list[tuple[str, str]] = [
    (r"test_create_ipvlan", "the ipvlan link kind"),
    (r"test_tunnel_endpoints_(up|down)\[", "gre, ipip and sit tunnels"),
    (r"mpls", "MPLS (AF_MPLS routes, RTA_VIA, RTA_NEWDST)"),
    (r"onlink|test_routes\.py::test_flags\[", "onlink nexthops (RTNH_F_ONLINK)"),
    (r"metrics", "route metrics (RTA_METRICS)"),
]


def root() -> str:
    return debsrc.cache_root("pyroute2")


def cached() -> str | None:
    """The unpacked source tree already in the cache (the newest version), or None."""
    r = root()
    found = [os.path.join(r, v) for v in (sorted(os.listdir(r)) if os.path.isdir(r) else ())]
    found = [f for f in found if os.path.isdir(os.path.join(f, "site"))]
    return _tree(found[-1]) if found else None


def _tree(version_dir: str) -> str:
    [top] = [d for d in os.listdir(version_dir) if d.startswith(PACKAGE + "-")]
    return os.path.join(version_dir, top)


def fetch(progress=print) -> str:
    """The source tree (its ``pyroute2`` package and ``tests``), fetched if not cached."""
    done = cached()
    if done is not None:
        return done
    mirror, tarball = debsrc.find(PACKAGE, SUITES)
    progress(f"pyroute2: downloading Debian's {PACKAGE} {tarball.version} source")
    vdir = os.path.join(root(), tarball.upstream)
    if os.path.isdir(vdir):
        subprocess.run(["rm", "-rf", vdir], check=True)
    tree = debsrc.unpack(mirror, tarball, vdir, ["pyroute2", "tests"])
    progress(f"pyroute2: installing {' '.join(DEPENDENCIES)} from PyPI beside it")
    site = os.path.join(vdir, "site.tmp")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "--target", site] + DEPENDENCIES,
                   check=True, capture_output=True)
    os.rename(site, os.path.join(vdir, "site"))
    return tree


def display_name(file: str, testcase: str) -> str:
    """``test_ipr/test_addr.py::test_addr_add[target=local]``: the node id below
    test_linux, without the one database every test uses and without spaces."""
    name = testcase.replace("db=sqlite3/:memory: ", "").replace(" ", ",")
    return f"{file}::{name}"


def _junit(path: str, file: str) -> list[Result]:
    out = []
    for case in ET.parse(path).iter("testcase"):
        secs = float(case.get("time") or 0)
        name = display_name(file, case.get("name", "?"))
        status, detail = "PASS", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status = "FAIL"
                msg = (child.get("message") or child.text or "").strip()
                where = "in its fixture: " if child.tag == "error" else ""
                detail = where + msg.splitlines()[0][:200] if msg else where
                break
            if child.tag == "skipped":
                status, detail = "SKIP", (child.get("message") or "").splitlines()[0][:200]
        out.append(Result(name, status, secs, detail))
    return out


def run_file(tree: str, file: str) -> list[Result]:
    tests = os.path.join(tree, "tests")
    site = os.path.join(os.path.dirname(tree), "site")
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        env = ["env", f"PYTHONPATH={tree}:{tests}:{site}", "SKIPDB=postgres"]
        cmd = env + [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     "-p", "no:xfrmd.testing", "--timeout", str(TEST_TIMEOUT),
                     "--basetemp", os.path.join(tmp, "base"), f"--junitxml={xml}",
                     # as in pyroute2's noxfile, which runs pytest in tests/: the conftest
                     # files from there down are loaded wherever the working directory is
                     "--rootdir", tests, "--confcutdir", tests,
                     os.path.join(tests, "test_linux", file)]
        t = time.monotonic()
        try:
            # the tests write their NDB backups to the working directory: a scratch one
            p = subprocess.run(XFRMD + ["run", "--topology", TOPOLOGY, "--"] + cmd, cwd=tmp,
                               capture_output=True, text=True, timeout=FILE_TIMEOUT)
            tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
        except subprocess.TimeoutExpired:
            tail = [f"TIMEOUT after {FILE_TIMEOUT} s"]
        if not os.path.exists(xml):
            return [Result(file, "FAIL", time.monotonic() - t, tail[0][:200])]
        return _junit(xml, file)


def unmodelled(r: Result) -> str | None:
    """The feature xfrmd does not model that a failing test needs, or None."""
    if r.status != "FAIL":
        return None
    text = f"{r.name} {r.detail}"
    return next((why for pat, why in UNMODELLED if re.search(pat, text)), None)


def run_all(tree: str, only: list[str] | None = None, progress=None) -> list[Result]:
    files = [f for f in FILES if not only or any(o.split("::")[0] == f for o in only)]
    out: list[Result] = []
    for f in files:
        if progress:
            progress(f"pyroute2: {f}")
        got = run_file(tree, f)
        out += [r for r in got if not only or f in only or r.name in only]
    return out


def summary(results: list[Result]) -> list[str]:
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    need = sum(unmodelled(r) is not None for r in results)
    modelled = len(results) - counts["SKIP"] - need
    share = f"{100 * counts['PASS'] / modelled:.1f} %" if modelled else "-"
    return [f"pyroute2: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} "
            f"skipped of {len(results)}; {need} of the failures need features xfrmd does not "
            f"model; {counts['PASS']} of the other {modelled} pass ({share})"]
