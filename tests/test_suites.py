"""``xfrmd suites kselftest``: the kernel's net selftests (Debian's linux-source-6.12) and
bond_ipsec_offload.sh (from forky's newer linux-source), unmodified under ``xfrmd run``. tools/test-all.sh fetches them (``xfrmd suites fetch``);
without them a developer's run skips, CI fails."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xfrmd.suites import kselftest

from .conftest import require

XFRMD = [sys.executable, "-m", "xfrmd.cli"]
# what passes today (docs/suites.md has the table): a test leaving this set is a regression
PASSING = {"kci_test_polrouting", "kci_test_route_get", "kci_test_addrlft",
           "kci_test_promote_secondaries", "kci_test_bridge", "kci_test_addrlabel",
           "kci_test_ifalias", "kci_test_ipsec", "kci_test_fdb_get", "kci_test_neigh_get",
           "kci_test_bridge_parent_id", "kci_test_enslave_bonding",
           "kci_test_ipsec_offload", "ipsec.c", "bond_ipsec_offload.sh"}


@pytest.fixture(scope="module")
def selftests():
    found = kselftest.cached()
    require(bool(found), "the kernel selftests are not fetched: xfrmd suites fetch "
                         "(tools/test-all.sh runs it)")
    return found


@pytest.fixture(scope="module")
def bonding(selftests):
    found = kselftest.cached(kselftest.BONDING)
    require(bool(found), "bond_ipsec_offload.sh is not fetched: xfrmd suites fetch "
                         "(tools/test-all.sh runs it)")
    return found


@pytest.fixture(scope="module")
def whole_run(selftests, bonding):
    """`xfrmd suites kselftest`, once for the module: ipsec.c runs in 8 processes (about 2
    minutes; single-process, `--ipsec-processes 1`, its tunnel tests' pings, 2 x 100 each
    50 ms apart as on Linux, take about 17)."""
    p = subprocess.run(XFRMD + ["suites", "kselftest"], capture_output=True, text=True,
                       timeout=1500)
    assert p.returncode == 0, p.stderr
    return p.stdout


# the module's run of the suite (about 5 minutes) is part of the first test using it
SUITE_TIMEOUT = 1800


@pytest.mark.timeout(SUITE_TIMEOUT)
def test_every_rtnetlink_test_and_ipsec_c_gets_one_line(selftests, whole_run):
    lines = whole_run.splitlines()
    names = kselftest.rtnetlink_tests(selftests) + ["ipsec.c", "bond_ipsec_offload.sh"]
    assert len(names) == 26 and "kci_test_ipsec" in names
    got = {ln.split()[1]: ln.split()[0] for ln in lines[:-1]}
    assert list(got) == names
    passing = {n for n, status in got.items() if status == "PASS"}
    assert PASSING <= passing, sorted(PASSING - passing)
    assert lines[-1] == (f"kselftest: {len(passing)} passed, "
                         f"{sum(s == 'FAIL' for s in got.values())} failed, "
                         f"{sum(s == 'SKIP' for s in got.values())} skipped of 26")


@pytest.mark.timeout(SUITE_TIMEOUT)
def test_ipsec_c_runs_to_the_end(whole_run):
    """The kernel's ipsec.c: its namespaces (unshare, setns, a veth across them by
    IFLA_NET_NS_FD) are emulated, so it runs every test; the tunnel tests' UDP pings are
    carried by the emulated stack (xfrmd/inet), so every test passes."""
    [line] = [ln for ln in whole_run.splitlines() if ln.split()[1:2] == ["ipsec.c"]]
    status, _, _, _, detail = line.split(None, 4)        # "PASS ipsec.c 137.6 s  ok:105 …"
    assert "Bail out" not in detail, line
    ok, bad = (int(x.split(":")[1]) for x in detail.split())   # "ok:105 not-ok:0"
    assert (ok, bad, status) == (105, 0, "PASS"), line


def test_one_test_by_name_with_json(selftests):
    p = subprocess.run(XFRMD + ["suites", "kselftest", "-t", "kci_test_ipsec", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    [r] = json.loads(p.stdout)
    assert (r["name"], r["status"], r["detail"]) == ("kci_test_ipsec", "PASS", "PASS: ipsec")


def test_bond_ipsec_offload_sh_passes_unmodified(bonding):
    """drivers/net/bonding/bond_ipsec_offload.sh (Linux 6.15 on): SAs offloaded to an
    active-backup bond of two netdevsim ports made in its own namespace, `ping -I bond0`
    counted as tx=3 in the active port's debugfs ipsec file (read from the initial
    namespace), the SAs moved to the other port on failover, and both files at "SA count=0"
    after the flush."""
    p = subprocess.run(XFRMD + ["suites", "kselftest", "-t", "bond_ipsec_offload.sh",
                                "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    [r] = json.loads(p.stdout)
    assert (r["name"], r["status"], r["detail"]) == ("bond_ipsec_offload.sh", "PASS",
                                                     "2 TEST lines OK"), r
